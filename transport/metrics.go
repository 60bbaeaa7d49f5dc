package transport

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"sync/atomic"

	"github.com/posecast/posecast/rooms"
)

// metrics are the server's Prometheus metrics, registered on a registry of
// the server's own so that several servers can live in one process.
type metrics struct {
	registry *prometheus.Registry

	sessions      prometheus.Gauge
	sessionsTotal prometheus.Counter
	disconnects   *prometheus.CounterVec // by close reason
	messagesIn    prometheus.Counter
	messagesOut   prometheus.Counter
	retries       prometheus.Counter
	tick          prometheus.Histogram
	tickLate      prometheus.Histogram
	drops         *prometheus.CounterVec // outbound traffic dropped, by reason
	rejected      *prometheus.CounterVec // inbound input refused, by reason

	// The counters of drops and rejected by reason, looked up once: some
	// are counted per datagram.
	dropSuperseded, dropPingQueueFull, dropTooLarge   prometheus.Counter
	rejBadDatagram, rejNotJoined, rejNotDriver        prometheus.Counter
	rejBadMessage, rejMessageTooLarge, rejRequestFail prometheus.Counter
	rejPoseRate, rejMessageRate, rejUnauthorized      prometheus.Counter
	rejMoved                                          prometheus.Counter
}

// Drop and rejection reasons, the label values of the drops and rejected
// counters.
const (
	dropUpdateSuperseded = "pose_update_superseded" // a whole update, replaced by a newer one before it was sent
	dropPingQueueFull    = "ping_queue_full"        // a ping echo, behind pingQueueLen others
	dropDatagramTooLarge = "datagram_too_large"     // a datagram over the session's path's limit

	rejectBadDatagram     = "bad_datagram"
	rejectNotJoined       = "not_joined"
	rejectNotDriver       = "not_driver"
	rejectBadMessage      = "bad_message"
	rejectMessageTooLarge = "message_too_large"
	rejectRequest         = "request_refused"
	rejectSessionsPerIP   = "sessions_per_ip"
	rejectSessions        = "sessions"
	rejectHTTPPerIP       = "http_connections_per_ip"
	rejectNewRooms        = "new_rooms"
	rejectUpgrade         = "upgrade_refused"
	rejectPoseRate        = "pose_rate"
	rejectMessageRate     = "message_rate"
	rejectUnauthorized    = "unauthorized"
	rejectMoved           = "moved"
)

func newMetrics(registry *rooms.Registry, pendingBytes, pendingDatagrams func() int, total func(func(*traffic) *atomic.Uint64) float64) *metrics {
	reg := prometheus.NewRegistry()
	f := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "posecast", Name: name, Help: help})
	}
	m := &metrics{
		registry:      reg,
		sessions:      prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "posecast", Name: "sessions", Help: "WebTransport sessions open now."}),
		sessionsTotal: f("sessions_total", "WebTransport sessions accepted."),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "posecast", Name: "disconnects_total", Help: "Sessions ended, by reason.",
		}, []string{"reason"}),
		messagesIn:  f("messages_in_total", "Control messages received."),
		messagesOut: f("messages_out_total", "Control messages sent."),
		retries:     f("quic_retries_total", "New QUIC connections asked to prove their address with a Retry, handshakes coming fast."),
		tick: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "posecast", Name: "tick_seconds", Help: "How long a room's tick took: diffs, stale marking and the pose fan-out.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 10), // 10 µs .. 38 ms
		}),
		tickLate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "posecast", Name: "tick_late_seconds",
			Help:    "How late a room's tick began: how much longer than the tick the time since its previous tick was. A node short of CPU starts ticks late.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2.5, 9), // 1 ms .. 1.5 s
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "posecast", Name: "drops_total", Help: "Outbound traffic dropped, by reason: whole pose updates for pose_update_superseded, datagrams otherwise.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "posecast", Name: "rejected_total", Help: "Inbound input refused or ignored, by reason.",
		}, []string{"reason"}),
	}
	m.dropSuperseded = m.drops.WithLabelValues(dropUpdateSuperseded)
	m.dropPingQueueFull = m.drops.WithLabelValues(dropPingQueueFull)
	m.dropTooLarge = m.drops.WithLabelValues(dropDatagramTooLarge)
	m.rejBadDatagram = m.rejected.WithLabelValues(rejectBadDatagram)
	m.rejNotJoined = m.rejected.WithLabelValues(rejectNotJoined)
	m.rejNotDriver = m.rejected.WithLabelValues(rejectNotDriver)
	m.rejBadMessage = m.rejected.WithLabelValues(rejectBadMessage)
	m.rejMessageTooLarge = m.rejected.WithLabelValues(rejectMessageTooLarge)
	m.rejRequestFail = m.rejected.WithLabelValues(rejectRequest)
	m.rejPoseRate = m.rejected.WithLabelValues(rejectPoseRate)
	m.rejMessageRate = m.rejected.WithLabelValues(rejectMessageRate)
	m.rejUnauthorized = m.rejected.WithLabelValues(rejectUnauthorized)
	m.rejMoved = m.rejected.WithLabelValues(rejectMoved)
	counted := func(name, help string, count func(*traffic) *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "posecast", Name: name, Help: help},
			func() float64 { return total(count) })
	}
	reg.MustRegister(
		counted("datagrams_in_total", "Datagrams received.", func(t *traffic) *atomic.Uint64 { return &t.datagramsIn }),
		counted("datagrams_out_total", "Datagrams sent.", func(t *traffic) *atomic.Uint64 { return &t.datagramsOut }),
		counted("bytes_in_total", "Bytes received in datagrams and control messages.", func(t *traffic) *atomic.Uint64 { return &t.bytesIn }),
		counted("bytes_out_total", "Bytes sent in datagrams and control messages.", func(t *traffic) *atomic.Uint64 { return &t.bytesOut }),
		counted("poses_in_total", "Pose datagrams stored in a pose table.", func(t *traffic) *atomic.Uint64 { return &t.posesIn }),
	)
	reg.MustRegister(
		m.tick, m.tickLate,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "posecast", Name: "members", Help: "Devices in rooms, held ones included."},
			func() float64 {
				n := 0
				for _, r := range registry.Rooms() {
					n += r.Stats().Devices
				}
				return float64(n)
			}),
		m.sessions, m.sessionsTotal, m.disconnects, m.messagesIn, m.messagesOut, m.retries, m.drops, m.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "posecast", Name: "outbound_pending_bytes", Help: "Control message bytes queued for sessions, or being written.",
		}, func() float64 { return float64(pendingBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "posecast", Name: "outbound_pending_datagrams", Help: "Datagrams waiting to be sent to sessions: ping echoes, the rest of the pose updates being sent and the updates waiting.",
		}, func() float64 { return float64(pendingDatagrams()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "posecast", Name: "rooms", Help: "Live rooms."},
			func() float64 { return float64(len(registry.Rooms())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "posecast", Name: "store_pending_changes", Help: "Entity changes acknowledged and waiting to be written to the store.",
		}, func() float64 { return float64(registry.PendingChanges()) }),
	)
	return m
}
