package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport"
)

// startServer runs a posecast node on loopback for the test, ticking every
// 100 ms, and returns its HTTP address and a function that stops it (also
// run at cleanup). With a secret, joins need tokens signed with it.
func startServer(t *testing.T, secret string) (string, func()) {
	t.Helper()
	return startServerTicking(t, secret, 100*time.Millisecond)
}

// startServerTicking is startServer with rooms that tick every tick.
func startServerTicking(t *testing.T, secret string, tick time.Duration) (string, func()) {
	t.Helper()
	return startServerWith(t, secret, func(_ *transport.Config, r *rooms.Config) { r.Tick = tick })
}

// startServerWith is startServer with configurations that configure changes.
func startServerWith(t *testing.T, secret string, configure func(*transport.Config, *rooms.Config)) (string, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cm, err := certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := rooms.Config{Tick: 100 * time.Millisecond, Logger: log}
	cfg := transport.Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Certs: cm, Logger: log, AuthSecret: []byte(secret)}
	configure(&cfg, &rcfg)
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry = reg
	srv, err := transport.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		reg.Close()
	}
	t.Cleanup(stop)
	return srv.HTTPURL(), stop
}

func TestARunReportsEveryField(t *testing.T) {
	server, _ := startServer(t, "")
	out := filepath.Join(t.TempDir(), "run.json")
	var live bytes.Buffer
	err := run(context.Background(), []string{
		"--server", server, "--rooms", "2", "--per-room", "3", "--hz", "20",
		"--duration", "3s", "--ramp", "500ms", "--hands", "--server-pid", "0", "--json", out,
	}, &live)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, live.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	fields := map[string][]string{
		"clients": nil, "joined": nil, "join_ms": {"p50", "p99"},
		"latency_ms": {"p50", "p90", "p99", "max"}, "staleness_ms": {"p50", "p99", "max"},
		"poses_sent": nil, "updates_received": nil, "datagrams_sent": nil, "datagrams_received": nil,
		"bytes_sent": nil, "bytes_received": nil, "moved": nil, "errors": nil, "tick_ms": nil, "duration_s": nil,
		"server_cpu_s": nil, "server_rss_mb": nil, "schedule": nil, "hz": nil, "load_cpu_s": nil,
		"host_udp":                    {"in_per_s", "out_per_s", "rcvbuf_errors"},
		"member_bytes_received_per_s": nil, "member_datagrams_received_per_s": nil,
		"near": {"latency_ms", "staleness_ms", "samples"}, "far": {"latency_ms", "staleness_ms", "samples"},
		"others": {"clients", "staleness_ms", "bytes_received_per_s", "datagrams_received_per_s", "updates", "torn", "torn_fraction", "skipped"},
	}
	for name, sub := range fields {
		v, ok := got[name]
		if !ok {
			t.Errorf("no %q in %s", name, b)
			continue
		}
		for _, s := range sub {
			if _, ok := v.(map[string]any)[s]; !ok {
				t.Errorf("no %s.%s in %s", name, s, b)
			}
		}
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	switch {
	case r.Clients != 6 || r.Joined != 6:
		t.Errorf("%d of %d joined, want 6 of 6", r.Joined, r.Clients)
	case r.PosesSent == 0 || r.UpdatesReceived == 0 || r.DatagramsReceived == 0 || r.BytesReceived == 0:
		t.Errorf("no traffic: %s", b)
	case r.LatencyMS.P50 <= 0 || r.LatencyMS.P99 < r.LatencyMS.P50 || r.LatencyMS.P99 > 5000:
		t.Errorf("latency %+v is not a measurement", r.LatencyMS)
	case r.StalenessMS.P50 <= 0 || r.StalenessMS.P99 < r.StalenessMS.P50 || r.StalenessMS.P99 > 5000:
		t.Errorf("staleness %+v is not a measurement", r.StalenessMS)
	case r.TickMS != 100:
		t.Errorf("tick %d ms, want the server's 100", r.TickMS)
	case len(r.Errors) != 0:
		t.Errorf("errors %v", r.Errors)
	case *r.ServerCPUS <= 0 || *r.ServerRSSMB <= 0:
		t.Errorf("server usage %v s, %v MB", *r.ServerCPUS, *r.ServerRSSMB)
	}
	if !strings.Contains(live.String(), "joined 6/6") {
		t.Errorf("no live line with every client joined:\n%s", live.String())
	}
}

// Slow bots read their sockets at a limited rate: the server's sending to
// them falls behind, and they miss pose updates, whole or in part, while
// the others get every part of every update. Four bots are among each
// other's nearest: every pair is near.
func TestSlowReceiversAreReportedApart(t *testing.T) {
	server, _ := startServer(t, "")
	out := filepath.Join(t.TempDir(), "run.json")
	var live bytes.Buffer
	err := run(context.Background(), []string{
		"--server", server, "--rooms", "1", "--per-room", "4", "--walk", "10",
		"--slow", "1", "--slow-rate", "1500B", // about what a bot here is sent
		"--duration", "4s", "--ramp", "200ms", "--json", out,
	}, &live)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, live.String())
	}
	r := readReport(t, out)
	if r.Slow == nil {
		t.Fatalf("no slow bots in the report: %+v", r)
	}
	slow, others := *r.Slow, r.Others
	switch {
	case slow.Clients != 1 || others.Clients != 3 || slow.RateBytesPerS != 1500 || others.RateBytesPerS != 0:
		t.Errorf("slow %d at %g B/s, others %d at %g; want 1 at 1500 and 3 at full speed", slow.Clients, slow.RateBytesPerS, others.Clients, others.RateBytesPerS)
	case slow.Updates == 0 || others.Updates == 0:
		t.Errorf("updates: slow %d, others %d; want some for each", slow.Updates, others.Updates)
	case slow.Torn+slow.Skipped == 0:
		t.Errorf("the slow bot got all %d updates whole", slow.Updates)
	case others.Torn != 0 || others.Skipped != 0:
		t.Errorf("the others got %d of %d updates torn and skipped %d", others.Torn, others.Updates, others.Skipped)
	case r.Near.Samples == 0 || r.Far.Samples != 0:
		t.Errorf("near samples %d, far %d; want every pair near", r.Near.Samples, r.Far.Samples)
	case r.WalkM != 10 || r.MemberBytesPerS <= 0 || r.MemberDatagramsPerS <= 0 || others.BytesPerS <= slow.BytesPerS:
		t.Errorf("walk %g m; per member %g B/s, %g datagrams/s; others %g B/s, slow %g", r.WalkM, r.MemberBytesPerS, r.MemberDatagramsPerS, others.BytesPerS, slow.BytesPerS)
	}
	for _, want := range []string{"slow bots", "1 reading at 1500 bytes/s", "other bots", "3 reading at full speed"} {
		if !strings.Contains(live.String(), want) {
			t.Errorf("summary without %q:\n%s", want, live.String())
		}
	}
}

// Pairs are near or far by the interest the room said it manages in
// joined, and all near when it said none.
func TestPairsFollowTheRoomsInterest(t *testing.T) {
	tests := []struct {
		name     string
		interest rooms.Interest
		want     *interest
	}{
		{"interest managed", rooms.Interest{Radius: 2, Nearest: 1, FarEvery: 4}, &interest{RadiusM: 2, Nearest: 1, FarEvery: 4, CellM: 1}},
		{"everything to everyone", rooms.Interest{Disabled: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, _ := startServerWith(t, "", func(_ *transport.Config, r *rooms.Config) { r.Interest = tt.interest })
			out := filepath.Join(t.TempDir(), "run.json")
			err := run(context.Background(), []string{
				"--server", server, "--rooms", "1", "--per-room", "6", "--walk", "100",
				"--duration", "3s", "--ramp", "200ms", "--json", out,
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			r := readReport(t, out)
			if (r.Interest == nil) != (tt.want == nil) || r.Interest != nil && *r.Interest != *tt.want {
				t.Errorf("interest %+v, want %+v", r.Interest, tt.want)
			}
			// Six bots in a square of 100 m are mostly further apart than
			// 2 m, and each has one nearest.
			if r.Near.Samples == 0 || (r.Far.Samples == 0) != (tt.want == nil) {
				t.Errorf("near samples %d, far %d", r.Near.Samples, r.Far.Samples)
			}
		})
	}
}

// By default the bots send one pose per tick of the room, whatever its
// period, and say so. When the poses go within the tick is the pacer's
// (transport/client's table tests); how young that makes them is measured
// in docs/BENCHMARKS.md, not asserted here.
func TestBotsSendInStepWithTheRoomsTick(t *testing.T) {
	for _, tick := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(tick.String(), func(t *testing.T) {
			server, _ := startServerTicking(t, "", tick)
			out := filepath.Join(t.TempDir(), "run.json")
			const clients, duration, ramp = 4, 4 * time.Second, 200 * time.Millisecond
			err := run(context.Background(), []string{
				"--server", server, "--rooms", "1", "--per-room", fmt.Sprint(clients),
				"--duration", duration.String(), "--ramp", ramp.String(), "--json", out,
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			r := readReport(t, out)
			// A bot sends one pose as it joins, one per tick from then, and
			// may send one more as it first falls in step with the tick.
			ticks := float64(clients) * (duration.Seconds()/tick.Seconds() + 2)
			perTick := float64(r.PosesSent) / ticks
			switch {
			case r.Schedule != "tick" || r.TickMS != tick.Milliseconds():
				t.Errorf("schedule %q at %d ms, want tick at %d", r.Schedule, r.TickMS, tick.Milliseconds())
			case perTick < 0.7 || perTick > 1:
				t.Errorf("%d poses from %d clients in %.0f ticks each: %.2f a tick, want 1", r.PosesSent, clients, ticks/clients, perTick)
			}
		})
	}
}

// Connections the server refuses for its bound per address are counted as
// refused, and the summary says which flag raises the bound.
func TestRefusedConnectionsAreNamed(t *testing.T) {
	const secret = "s3cret"
	server, _ := startServerWith(t, secret, func(c *transport.Config, _ *rooms.Config) { c.MaxSessionsPerIP = 2 })
	var out bytes.Buffer
	err := run(context.Background(), []string{
		"--server", server, "--rooms", "1", "--per-room", "4", "--auth-secret", secret,
		"--duration", "2s", "--ramp", "200ms", "--join-timeout", "2s",
	}, &out)
	if err == nil {
		t.Fatal("a run with refused clients passed")
	}
	if !strings.Contains(out.String(), "refused=2") || !strings.Contains(out.String(), "--max-sessions-per-ip") {
		t.Errorf("summary does not name the refusals and the flag:\n%s", out.String())
	}
}

func TestAServerThatStopsMidRunFailsTheRun(t *testing.T) {
	server, stop := startServer(t, "")
	out := filepath.Join(t.TempDir(), "run.json")
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{
			"--server", server, "--rooms", "1", "--per-room", "4",
			"--duration", "6s", "--ramp", "200ms", "--join-timeout", "2s", "--json", out,
		}, io.Discard)
	}()
	time.Sleep(2 * time.Second)
	stop()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the run succeeded with its server gone")
		}
		t.Logf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the bot hangs after its server stopped")
	}
	r := readReport(t, out)
	if r.Errors[errStream] != 4 {
		t.Errorf("errors %v, want stream=4", r.Errors)
	}
}

func TestTokensForAServerWithASecret(t *testing.T) {
	server, _ := startServer(t, "bot secret")
	tests := []struct {
		name   string
		secret string
		joined int
	}{
		{"signed with the server's secret", "bot secret", 3},
		{"signed with another", "not the secret", 0},
		{"no token", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("POSECAST_AUTH_SECRET", "") // only the flag counts here
			out := filepath.Join(t.TempDir(), "run.json")
			err := run(context.Background(), []string{
				"--server", server, "--rooms", "1", "--per-room", "3", "--duration", "2s", "--ramp", "200ms",
				"--auth-secret", tt.secret, "--json", out,
			}, io.Discard)
			if (err == nil) != (tt.joined == 3) {
				t.Errorf("run: %v", err)
			}
			r := readReport(t, out)
			if r.Joined != tt.joined || (tt.joined == 0 && r.Errors[errJoin] != 3) {
				t.Errorf("joined %d, errors %v; want %d joined", r.Joined, r.Errors, tt.joined)
			}
		})
	}
}

func TestFlagsRefuseRoomsNoServerWouldTake(t *testing.T) {
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"a prefix with a space", []string{"--room-prefix", "my room "}, false},
		{"a prefix too long", []string{"--room-prefix", strings.Repeat("r", rooms.MaxIDLength)}, false},
		{"no rooms", []string{"--rooms", "0"}, false},
		{"ramp past the end", []string{"--duration", "2s", "--ramp", "3s"}, false},
		{"free-running", []string{"--hz", "20"}, true},
		{"a negative rate", []string{"--hz", "-1"}, false},
		{"two copies a tick", []string{"--copies", "2"}, true},
		{"three copies a tick", []string{"--copies", "3"}, false},
		{"a walk", []string{"--walk", "60"}, true},
		{"a walk of negative side", []string{"--walk", "-1"}, false},
		{"slow bots", []string{"--slow", "2", "--slow-rate", "16KiB"}, true},
		{"more slow bots than bots", []string{"--rooms", "1", "--per-room", "2", "--slow", "3"}, false},
		{"a slow rate of no bytes", []string{"--slow", "1", "--slow-rate", "0KB"}, false},
		{"a slow rate in no unit", []string{"--slow", "1", "--slow-rate", "16 parsecs"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseFlags(tt.args); (err == nil) != tt.ok {
				t.Errorf("parseFlags(%q): %v", tt.args, err)
			}
		})
	}
}

// renderTable writes reports as posebot's JSON and returns what posebot
// table makes of them.
func renderTable(t *testing.T, reports ...*report) string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, r := range reports {
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("%d.json", i)))
		if err := writeJSON(paths[i], r); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"table"}, paths...), &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTableRendersReports(t *testing.T) {
	free := report{Clients: 100, Joined: 100, Rooms: 2, PerRoom: 50, Schedule: "free", Hz: 20, PosesSent: 20000, DatagramsReceived: 5000, BytesReceived: 5e6,
		LatencyMS: quantiles{P50: 25, P99: 49}, StalenessMS: quantiles{P99: 250}, DurationS: 10, ServerCPUS: ptr(3), ServerRSSMB: ptr(40), LoadCPUS: ptr(1.5)}
	tick := report{Clients: 100, Joined: 99, Rooms: 2, PerRoom: 50, Schedule: "tick", Copies: 2, PosesSent: 9900, DatagramsReceived: 5000, BytesReceived: 5e6,
		LatencyMS: quantiles{P50: 6, P99: 20}, StalenessMS: quantiles{P99: 210}, DurationS: 10}
	out := renderTable(t, &free, &tick)
	for _, want := range []string{
		"| 100 | 2 × 50 | 20 Hz | 0.30 | 40 MB | 0.15 | 2000 | 500 | 500000 | 25 / 49 ms | 250 ms | 0 |",
		"| 99 | 2 × 50 | 2 per tick | – | – | – | 990 | 500 | 500000 | 6 / 20 ms | 210 ms | 0 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table:\n%s\nwant a row %s", out, want)
		}
	}
}

func TestTableRendersBigRoomReports(t *testing.T) {
	everyone := report{Clients: 500, Joined: 500, Rooms: 1, PerRoom: 500, WalkM: 40, DurationS: 10, ServerCPUS: ptr(5), ServerRSSMB: ptr(300), LoadCPUS: ptr(8),
		MemberBytesPerS: 50000, MemberDatagramsPerS: 45, Near: pairs{StalenessMS: quantiles{P50: 200, P99: 400}, Samples: 10}, Resyncs: 3}
	managed := everyone
	managed.Interest = &interest{RadiusM: 5, Nearest: 24, FarEvery: 4}
	managed.MemberBytesPerS, managed.MemberDatagramsPerS = 20000, 15
	managed.Far = pairs{StalenessMS: quantiles{P50: 500, P99: 900}, Samples: 10}
	managed.Slow = &receivers{Clients: 2, RateBytesPerS: 16000, StalenessMS: quantiles{P99: 3000}, TornFraction: 0.05, Skipped: 40}
	managed.Others = receivers{TornFraction: 0.001, Skipped: 2}
	out := renderTable(t, &everyone, &managed)
	for _, want := range []string{
		"| 500 / 500 | none: every avatar every tick | 0.50 | 1.00 ms/s | 300 MB | 0.80 | 50.0 KB/s | 45.0 /s | 200 / 400 ms | – | 3 | – | 0.0 %, 0 | 0 |",
		"| 500 / 500 | 5 m, 24 nearest, far every 4 | 0.50 | 1.00 ms/s | 300 MB | 0.80 | 20.0 KB/s | 15.0 /s | 200 / 400 ms | 500 / 900 ms | 3 | 2 at 16000 B/s: 3000 ms, 5.0 %, 40 | 0.1 %, 2 | 0 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table:\n%s\nwant a row %s", out, want)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for v := range int64(1000) {
		h.record(v)
	}
	h.record(5000)
	tests := []struct {
		q    float64
		want float64
	}{{0.5, 500}, {0.99, 990}, {1, 5000}}
	for _, tt := range tests {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("an empty histogram has a median")
	}
}

// elsewhere is a placement by which every room lives at one location.
type elsewhere struct{ owner codec.Location }

func (e elsewhere) Claim(_ context.Context, room string) (rooms.Claim, error) {
	return rooms.Claim{}, &rooms.ElsewhereError{Room: room, Owner: e.owner}
}

func (elsewhere) Release(context.Context, string, rooms.Claim) error { return nil }

func (e elsewhere) Lookup(context.Context, string) (codec.Location, bool, error) {
	return e.owner, true, nil
}

func TestBotsFollowTheirRoomToWhereItLives(t *testing.T) {
	// The bots are sent to a node whose rooms all live on another; midway
	// the room moves (its node evicts it), and they follow.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(placement rooms.Placement) (*transport.Server, *rooms.Registry) {
		cm, err := certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{Tick: 100 * time.Millisecond, Placement: placement, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := transport.NewServer(transport.Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Certs: cm, Registry: reg, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			reg.Close()
		})
		return srv, reg
	}
	owner, ownerRooms := start(nil)
	loc := codec.Location{Node: "owner", URL: owner.URL()}
	loc.Current, loc.Next = owner.CertHashes()
	front, _ := start(elsewhere{loc})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		time.Sleep(2 * time.Second)
		ownerRooms.Evict("bots0", rooms.Claim{}, &loc)
	}()
	out := filepath.Join(t.TempDir(), "run.json")
	var live bytes.Buffer
	err := run(ctx, []string{"--server", front.HTTPURL(), "--rooms", "1", "--per-room", "4", "--hz", "20",
		"--duration", "4s", "--ramp", "300ms", "--room-prefix", "bots", "--server-pid", "0", "--json", out}, &live)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, live.String())
	}
	r := readReport(t, out)
	if r.Joined != 4 || r.Moved != 4 || len(r.Errors) != 0 {
		t.Errorf("joined %d, moved %d, errors %v; want 4 joined at the owner, 4 moved, no errors", r.Joined, r.Moved, r.Errors)
	}
	if r.UpdatesReceived == 0 {
		t.Error("the bots received no pose updates")
	}
}

// readReport reads a run's JSON report.
func readReport(t *testing.T, path string) report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}
