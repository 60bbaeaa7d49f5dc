package transport

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// metricValues reads ts's /metrics and returns every sample by its name and
// labels, as the text format writes them (`name{label="value"}`).
func metricValues(t *testing.T, ts *testServer) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(scrape(t, ts)))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for name, f := range families {
		for _, m := range f.GetMetric() {
			key := name
			if len(m.GetLabel()) > 0 {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
				}
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestTheMetricsEndpointFollowsTheTraffic(t *testing.T) {
	var srv atomic.Pointer[Server]
	ts := startServer(t, func(_ *Config, r *rooms.Config) {
		r.OnTick = func(late, work time.Duration) {
			if s := srv.Load(); s != nil {
				s.ObserveTick(late, work)
			}
		}
	})
	srv.Store(ts.Server)
	before := metricValues(t, ts)

	ada, _ := join(t, ts, "lobby", "ada")
	bob, _ := join(t, ts, "lobby", "bob")
	const poses = 10
	for i := range uint32(poses) {
		if err := ada.SendPose(pose(i+1, float64(i), 1.6, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, bob, "ada's last pose", func(v *client.View) bool { return v.Poses["ada"].Time == poses })
	waitUntil(t, "every pose counted", func() bool { return metricValues(t, ts)["posecast_poses_in_total"] >= poses })
	after := metricValues(t, ts)

	tests := []struct {
		metric string
		want   float64 // at least this much more than before
	}{
		{"posecast_sessions", 2},
		{"posecast_sessions_total", 2},
		{"posecast_members", 2},
		{"posecast_rooms", 1},
		{"posecast_poses_in_total", poses},
		{"posecast_datagrams_in_total", poses},
		{"posecast_bytes_in_total", poses * 22},
		{"posecast_datagrams_out_total", 1},
		{"posecast_bytes_out_total", 1},
		{"posecast_messages_in_total", 4}, // two hellos, two joins
		{"posecast_messages_out_total", 8},
		{"posecast_tick_seconds_count", 1},
		{"posecast_tick_late_seconds_count", 1},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			got, ok := after[tt.metric]
			if !ok {
				t.Fatalf("/metrics has no %s", tt.metric)
			}
			if got-before[tt.metric] < tt.want {
				t.Errorf("%s went from %v to %v, want at least %v more", tt.metric, before[tt.metric], got, tt.want)
			}
		})
	}
	for _, gauge := range []string{"posecast_outbound_pending_bytes", "posecast_outbound_pending_datagrams", "posecast_store_pending_changes"} {
		if _, ok := after[gauge]; !ok {
			t.Errorf("/metrics has no %s", gauge)
		}
	}

	bob.Close()
	waitUntil(t, "bob's session gone from the gauge", func() bool { return metricValues(t, ts)["posecast_sessions"] == 1 })
	if got := metricValues(t, ts)[`posecast_disconnects_total{reason="normal"}`]; got < 1 {
		t.Errorf("disconnects by normal: %v, want bob's", got)
	}
}

func TestTrafficCountsOutliveTheirSessions(t *testing.T) {
	ts := startServer(t)
	c, _ := join(t, ts, "lobby", "ada")
	for i := range uint32(5) {
		if err := c.SendPose(pose(i+1, float64(i), 1.6, 0)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the poses counted", func() bool { return metricValues(t, ts)["posecast_poses_in_total"] == 5 })
	c.Close()
	waitUntil(t, "the session ended", func() bool { return ts.Sessions() == 0 })
	if got := metricValues(t, ts)["posecast_poses_in_total"]; got != 5 {
		t.Errorf("poses counted after the session ended: %v, want 5", got)
	}
}
