// Command posebot load-tests a posecast server: it ramps up many simulated
// headsets, joins them to rooms, has each send head (and hand) poses the way
// a person moves, and measures what they receive: pose latency, how stale
// each bot's view of the others gets, joins, traffic and errors.
//
//	posebot --server http://127.0.0.1:8080 --rooms 4 --per-room 25 --hz 20 --duration 30s
//
// It prints a live line each second and a summary at the end, writes the
// result as JSON with --json, and exits non-zero when clients fail to join or
// errors pass --max-error-rate.
//
//	posebot table a.json b.json ...
//
// prints the results as the Markdown table of docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "posebot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "table" {
		return table(args[1:], out)
	}
	cfg, jsonPath, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := execute(ctx, cfg, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	rep.writeSummary(out)
	if jsonPath != "" {
		if err := writeJSON(jsonPath, rep); err != nil {
			return err
		}
	}
	if rep.Joined < rep.Clients {
		return fmt.Errorf("%d of %d clients did not join", rep.Clients-rep.Joined, rep.Clients)
	}
	if rate := float64(rep.errorTotal()) / float64(rep.Clients); rate > cfg.maxErrorRate {
		return fmt.Errorf("%d errors for %d clients (%.3f per client) is over --max-error-rate %.3f: %s",
			rep.errorTotal(), rep.Clients, rate, cfg.maxErrorRate, errorSummary(rep.Errors))
	}
	return nil
}

func parseFlags(args []string) (config, string, error) {
	var c config
	var jsonPath string
	fs := flag.NewFlagSet("posebot", flag.ContinueOnError)
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "the server's HTTP address; the WebTransport URL and certificate hashes come from its /cert-hash")
	fs.IntVar(&c.rooms, "rooms", 4, "rooms to fill")
	fs.IntVar(&c.perRoom, "per-room", 25, "clients per room")
	fs.Float64Var(&c.schedule.Hz, "hz", 0, "poses each client sends per second, free-running (default: one per tick of the room, timed to arrive just before it)")
	fs.DurationVar(&c.schedule.Margin, "margin", 0, "in step with the tick, how long before the tick a pose is meant to arrive (default: learned from what the ticks show of its own poses)")
	fs.IntVar(&c.schedule.Copies, "copies", 1, "poses sent per tick in step with the tick: 1, or 2 for lossy links")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the run lasts, ramp included")
	fs.DurationVar(&c.ramp, "ramp", 3*time.Second, "how long it takes to start every client")
	fs.StringVar(&c.roomPrefix, "room-prefix", "bot-", "prefix of the rooms' names")
	fs.BoolVar(&c.hands, "hands", false, "send hand poses too")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 10*time.Second, "how long a client may take to connect and join")
	fs.IntVar(&c.serverPID, "server-pid", 0, "the server's process id, to read its CPU time and memory from /proc (default: from its /metrics)")
	fs.Float64Var(&c.maxErrorRate, "max-error-rate", 0.01, "errors per client above which posebot exits non-zero")
	fs.StringVar(&jsonPath, "json", "", "write the result as JSON to this file")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write posebot's own CPU profile to this file")
	fs.Float64Var(&c.walk, "walk", 0, "have the bots walk between random waypoints, at a walking pace, in a square of this side in metres centred where the room places joiners (default: each circles where it was placed)")
	fs.IntVar(&c.slow, "slow", 0, "how many bots (the first to start, spread over the rooms) read their socket at --slow-rate once joined, reported apart")
	c.slowRate = 16e3
	fs.Var(&c.slowRate, "slow-rate", "the rate the --slow bots read at, bytes a second: 16KB, 16KiB, 1MB, 500B")
	fs.StringVar(&c.authSecret, "auth-secret", os.Getenv("POSECAST_AUTH_SECRET"), "the server's --auth-secret, to sign each bot a join token (default $POSECAST_AUTH_SECRET; none for a server in development mode)")
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	switch {
	case fs.NArg() > 0:
		return c, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.rooms < 1 || c.perRoom < 1:
		return c, "", errors.New("--rooms and --per-room must be at least 1")
	case c.schedule.Hz < 0 || c.schedule.Hz > 1000:
		return c, "", errors.New("--hz must be in [0, 1000]")
	case c.schedule.Copies < 1 || c.schedule.Copies > 2:
		return c, "", errors.New("--copies must be 1 or 2")
	case c.duration <= 0 || c.ramp < 0 || c.ramp >= c.duration:
		return c, "", errors.New("--duration must be positive and longer than --ramp")
	case c.joinTimeout <= 0:
		return c, "", errors.New("--join-timeout must be positive")
	case c.walk < 0 || c.walk > 10000:
		return c, "", errors.New("--walk must be in [0, 10000] metres")
	case c.slow < 0 || c.slow > c.clients():
		return c, "", fmt.Errorf("--slow must be in [0, %d], the number of clients", c.clients())
	case !rooms.ValidID(fmt.Sprintf("%s%d", c.roomPrefix, c.rooms-1)):
		return c, "", fmt.Errorf("--room-prefix %q does not make valid room ids (letters, digits, _ . : @ -, at most %d)", c.roomPrefix, rooms.MaxIDLength)
	}
	c.server = strings.TrimSuffix(c.server, "/")
	return c, jsonPath, nil
}

// execute does one run and returns its report.
func execute(ctx context.Context, cfg config, out io.Writer) (*report, error) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, _, err := client.FetchCertHash(fctx, cfg.server)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	n := cfg.clients()
	trs, closeSockets, err := sockets(n)
	if err != nil {
		return nil, err
	}
	defer closeSockets()
	slowConns, slowTrs, closeSlow, err := slowSockets(cfg.slow, float64(cfg.slowRate))
	if err != nil {
		return nil, err
	}
	defer closeSlow()

	r := &loadTest{cfg: cfg, started: time.Now()}
	r.ownCPU, _, _ = readProc(os.Getpid())
	udpBefore, udpErr := readUDP()
	usage := newServerUsage(cfg.serverPID, cfg.server)
	usage.begin(ctx)
	rooms := make([]*room, cfg.rooms)
	for i := range rooms {
		rooms[i] = &room{name: fmt.Sprintf("%s%d", cfg.roomPrefix, i)}
	}
	r.rooms = rooms

	runCtx, stop := context.WithDeadline(ctx, r.started.Add(cfg.duration))
	defer stop()
	var bots sync.WaitGroup
	for i := range n {
		at := r.started.Add(cfg.ramp * time.Duration(i) / time.Duration(n))
		tr, slow := trs[i%len(trs)], (*slowConn)(nil)
		if i < cfg.slow {
			tr, slow = slowTrs[i], slowConns[i]
		}
		bots.Go(func() { r.startBot(runCtx, i, rooms[i%len(rooms)], tr, slow, at) })
	}
	live := newLiveLine(out, n)
	var watch sync.WaitGroup
	watch.Go(func() { r.watch(runCtx, usage, live) })
	bots.Wait()
	watch.Wait()
	elapsed := time.Since(r.started)
	usage.sample(context.Background())
	rep := r.report(elapsed, usage)
	if udpAfter, err := readUDP(); err == nil && udpErr == nil {
		secs := elapsed.Seconds()
		rep.HostUDP = &hostUDP{
			InPerS:       round1(float64(udpAfter.in-udpBefore.in) / secs),
			OutPerS:      round1(float64(udpAfter.out-udpBefore.out) / secs),
			RcvbufErrors: udpAfter.rcvbufErrors - udpBefore.rcvbufErrors,
		}
	}
	return rep, nil
}

// watch samples staleness ten times a second on average, maps where the
// bots stand four times a second and, every second, the server's usage and
// the live line, until ctx ends. The samples
// are spaced at random (50 to 150 ms apart): at fixed times they would fall
// at the same point of every tick and see the same part of the sawtooth of
// staleness each time.
func (r *loadTest) watch(ctx context.Context, usage *serverUsage, live *liveLine) {
	sample := time.NewTimer(sampleInterval())
	defer sample.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	floor := time.NewTicker(250 * time.Millisecond)
	defer floor.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-sample.C:
			r.sampleStaleness(now)
			sample.Reset(sampleInterval())
		case <-floor.C:
			r.mapFloors()
		case <-second.C:
			usage.sample(ctx)
			errs, _ := r.stats.errorCounts()
			live.print(liveStats{
				joined:   int(r.stats.joined.Load()),
				sent:     r.stats.posesSent.Load(),
				received: r.stats.updatesReceived.Load(),
				p50:      r.latency.quantile(0.5),
				p99:      r.latency.quantile(0.99),
				stale99:  r.stale.quantile(0.99),
				errors:   errs,
			})
		}
	}
}

// sampleInterval is the time to the next staleness sample.
func sampleInterval() time.Duration {
	return 50*time.Millisecond + rand.N(100*time.Millisecond)
}

// report assembles the run's result.
func (r *loadTest) report(elapsed time.Duration, usage *serverUsage) *report {
	errs, _ := r.stats.errorCounts()
	rep := &report{
		Clients:         r.cfg.clients(),
		Joined:          int(r.stats.joined.Load()),
		Rooms:           r.cfg.rooms,
		PerRoom:         r.cfg.perRoom,
		Schedule:        r.cfg.scheduleName(),
		Hz:              r.cfg.schedule.Hz,
		Copies:          r.cfg.schedule.Copies,
		Hands:           r.cfg.hands,
		JoinMS:          quantiles{P50: r.joins.quantile(0.5), P99: r.joins.quantile(0.99)},
		LatencyMS:       quantiles{P50: r.latency.quantile(0.5), P90: ptr(r.latency.quantile(0.9)), P99: r.latency.quantile(0.99), Max: ptr(float64(r.latency.max.Load()))},
		StalenessMS:     r.stale.summary(),
		PosesSent:       r.stats.posesSent.Load(),
		UpdatesReceived: r.stats.updatesReceived.Load(),
		Resyncs:         r.stats.resyncs.Load(),
		Moved:           r.stats.moved.Load(),
		Errors:          errs,
		TickMS:          r.tickMS.Load(),
		DurationS:       round1(elapsed.Seconds()),
		WalkM:           r.cfg.walk,
		Near:            r.near.report(),
		Far:             r.far.report(),
	}
	var all, slow, others receiverTotals
	r.mu.Lock()
	for _, b := range r.clients {
		t := b.traffic()
		rep.DatagramsSent += t.DatagramsSent
		rep.DatagramsReceived += t.DatagramsReceived
		rep.BytesSent += t.BytesSent
		rep.BytesReceived += t.BytesReceived
		group := &others
		if b.slow != nil {
			group = &slow
		}
		all.add(b, t)
		group.add(b, t)
	}
	r.mu.Unlock()
	rep.MemberBytesPerS, rep.MemberDatagramsPerS = all.rates()
	rep.Others = others.report(&r.otherStale)
	if r.cfg.slow > 0 {
		s := slow.report(&r.slowStale)
		s.RateBytesPerS = float64(r.cfg.slowRate)
		rep.Slow = &s
	}
	for _, rm := range r.rooms {
		if in := rm.interest.Load(); in != nil {
			rep.Interest = &interest{RadiusM: in.Radius, Nearest: in.Nearest, FarEvery: in.FarEvery, CellM: in.Cell}
			break
		}
	}
	if cpu, _, err := readProc(os.Getpid()); err == nil {
		rep.LoadCPUS = ptr(round1(cpu - r.ownCPU))
	}
	if usage.ok {
		rep.ServerCPUS = ptr(round1(usage.cpuEnd - usage.cpuStart))
		rep.ServerRSSMB = ptr(round1(usage.rssPeak / (1 << 20)))
	}
	return rep
}

// report returns the pairs' latency and staleness.
func (h *pairHistograms) report() pairs {
	return pairs{LatencyMS: h.latency.summary(), StalenessMS: h.stale.summary(), Samples: h.stale.count.Load()}
}

// receiverTotals add up what a group of bots received.
type receiverTotals struct {
	clients                int
	seconds                float64 // in their rooms
	bytes, datagrams       uint64
	updates, torn, skipped uint64
}

// add counts a bot that has stopped, whose traffic was t.
func (g *receiverTotals) add(b *botClient, t client.Traffic) {
	g.clients++
	g.seconds += b.leftAt.Sub(b.joinedAt).Seconds()
	g.bytes += t.BytesReceived
	g.datagrams += t.DatagramsReceived
	g.updates += b.updates.updates
	g.torn += b.updates.torn
	g.skipped += b.updates.skipped
}

// rates returns the bytes and datagrams a bot received a second.
func (g *receiverTotals) rates() (bytes, datagrams float64) {
	if g.seconds <= 0 {
		return 0, 0
	}
	return round1(float64(g.bytes) / g.seconds), round1(float64(g.datagrams) / g.seconds)
}

// report returns the group's part of the report, with the staleness its
// bots saw.
func (g *receiverTotals) report(stale *histogram) receivers {
	rep := receivers{Clients: g.clients, StalenessMS: stale.summary(), Updates: g.updates, Torn: g.torn, Skipped: g.skipped}
	rep.BytesPerS, rep.DatagramsPerS = g.rates()
	if g.updates > 0 {
		rep.TornFraction = float64(g.torn) / float64(g.updates)
	}
	return rep
}

// table prints JSON results as a Markdown table.
func table(paths []string, out io.Writer) error {
	var reports []*report
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		reports = append(reports, &r)
	}
	table := markdownTable
	if slices.ContainsFunc(reports, func(r *report) bool { return r.WalkM > 0 }) {
		table = bigRoomTable
	}
	_, err := io.WriteString(out, table(reports))
	return err
}
