package transport

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// throttledConn is a client's UDP socket whose reads, while slow is set,
// each wait delay first: a receiver whose path takes less than the server
// would send it.
type throttledConn struct {
	net.PacketConn
	delay time.Duration
	slow  atomic.Bool
}

func (c *throttledConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.slow.Load() {
		time.Sleep(c.delay)
	}
	return c.PacketConn.ReadFrom(b)
}

// sentUpdate is a pose update as a session handed it to quic-go: its seq,
// its count of parts and the parts sent, in order.
type sentUpdate struct {
	seq   uint32
	parts int
	sent  []int
}

// whole reports whether every part of u went out, in order.
func (u sentUpdate) whole() bool {
	if len(u.sent) != max(1, u.parts) {
		return false
	}
	for i, p := range u.sent {
		if p != i {
			return false
		}
	}
	return true
}

// sentLog records, from the server's test hook, the pose update datagrams
// each session sent, by session id.
type sentLog struct {
	mu        sync.Mutex // guards the following
	updates   map[string][]sentUpdate
	datagrams int // every datagram sent, ping echoes included
}

func (l *sentLog) record(ss *session, d *outDatagram) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.datagrams++
	if d.echo != nil {
		return
	}
	us := l.updates[ss.id]
	if n := len(us); n == 0 || us[n-1].seq != d.seq || us[n-1].whole() {
		us = append(us, sentUpdate{seq: d.seq, parts: int(d.parts)})
	}
	us[len(us)-1].sent = append(us[len(us)-1].sent, int(d.part))
	l.updates[ss.id] = us
}

// of returns the updates sent to c.
func (l *sentLog) of(c *client.Client) []sentUpdate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sentUpdate(nil), l.updates[c.View().Session]...)
}

// skipped counts the updates missing between the first and last of us.
func skipped(us []sentUpdate) int {
	n := 0
	for i := 1; i < len(us); i++ {
		n += int(us[i].seq - us[i-1].seq - 1)
	}
	return n
}

// TestASlowReceiverGetsWholeUpdatesWhileTheOthersGetEveryOne puts two
// clients in a room whose every update takes 4 datagrams, and throttles the
// reads of one of them below what the room sends. The server, falling
// behind on that session, sends it fewer updates, each whole, and every one
// again once its reads are fast; the other client gets every update
// throughout. What the server sent is what its sessions handed to quic-go:
// loopback may still lose a datagram after that.
func TestASlowReceiverGetsWholeUpdatesWhileTheOthersGetEveryOne(t *testing.T) {
	ts := startServer(t, func(_ *Config, rc *rooms.Config) {
		rc.Tick = 20 * time.Millisecond
		rc.RepeatTicks = 1 << 20 // every avatar in every update
		rc.Interest.Disabled = true
	})
	// 80 avatars with both hands, 46 bytes each: 4 datagrams an update.
	hands := codec.AppendPose(nil, &codec.Pose{Time: 1, Head: codec.Identity, HasLeft: true, Left: codec.Identity, HasRight: true, Right: codec.Identity})
	for i := range 80 {
		m, err := ts.registry.Join(testContext(t), "hall", nullMember{}, rooms.JoinRequest{User: fmt.Sprintf("still%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.UpdatePose(hands); err != nil {
			t.Fatal(err)
		}
	}
	log := &sentLog{updates: map[string][]sentUpdate{}}
	hook := log.record
	ts.testHookSent.Store(&hook)

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	throttled := &throttledConn{PacketConn: udp, delay: 20 * time.Millisecond}
	tr := &quic.Transport{Conn: throttled}
	t.Cleanup(func() {
		tr.Close()
		udp.Close()
	})
	slow, _ := join(t, ts, "hall", "slow", func(c *client.Config) { c.Transport = tr })
	fast, _ := join(t, ts, "hall", "fast")
	waitUntil(t, "updates of 4 parts", func() bool {
		us := log.of(fast)
		return len(us) > 0 && us[len(us)-1].parts == 4
	})

	throttled.slow.Store(true) // 50 reads a second, for 200 datagrams
	waitUntil(t, "the slow receiver skipping updates", func() bool { return skipped(log.of(slow)) >= 10 })
	throttled.slow.Store(false)
	recovered := func(us []sentUpdate) bool {
		n := len(us)
		return n > 20 && us[n-1].seq-us[n-20].seq == 19
	}
	waitUntil(t, "the slow receiver back on every update", func() bool { return recovered(log.of(slow)) })

	slowSent, fastSent := log.of(slow), log.of(fast)
	for name, us := range map[string][]sentUpdate{"slow": slowSent, "fast": fastSent} {
		for i, u := range us[:len(us)-1] { // the last may be on its way
			if !u.whole() || u.parts != 4 {
				t.Fatalf("the %s receiver was sent update %d as parts %v of %d", name, u.seq, u.sent, u.parts)
			}
			if i > 0 && u.seq <= us[i-1].seq {
				t.Fatalf("the %s receiver was sent update %d after %d", name, u.seq, us[i-1].seq)
			}
		}
	}
	if n := skipped(fastSent); n != 0 {
		t.Errorf("the fast receiver was not sent %d of the updates %d..%d", n, fastSent[0].seq, fastSent[len(fastSent)-1].seq)
	}
	if dropped, n := testutil.ToFloat64(ts.metrics.dropSuperseded), skipped(slowSent); dropped < float64(n) {
		t.Errorf("%v updates counted superseded, fewer than the %d the slow receiver was not sent", dropped, n)
	}
	if n := testutil.ToFloat64(ts.metrics.dropTooLarge); n != 0 {
		t.Errorf("%v datagrams dropped as too large", n)
	}

	// Once the sessions have ended, the traffic counted is what was sent.
	slow.Close()
	fast.Close()
	waitUntil(t, "the sessions ended", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.sessions) == 0
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	if got := ts.trafficTotal(func(tr *traffic) *atomic.Uint64 { return &tr.datagramsOut }); got != float64(log.datagrams) {
		t.Errorf("datagrams_out_total %v, but the sessions handed quic-go %d", got, log.datagrams)
	}
}
