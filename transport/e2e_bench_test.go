package transport

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// BenchmarkEndToEnd runs clients in one room on loopback, each sending head
// poses at 20 Hz, and measures pose latency: from a sender's timestamp to a
// receiver's receipt of that pose, on one clock. The server ticks every
// 200 ms, so latency is about half a tick on average plus the network.
// POSECAST_BENCH_DURATION sets how long each run lasts (default 20s).
func BenchmarkEndToEnd(b *testing.B) {
	duration := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("POSECAST_BENCH_DURATION")); err == nil {
		duration = d
	}
	for _, tt := range []struct {
		members int
		flood   bool
	}{{10, false}, {50, false}, {10, true}} {
		name := fmt.Sprintf("members=%d", tt.members)
		if tt.flood {
			name += "+flooder"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				runEndToEnd(b, tt.members, 20, duration, tt.flood)
			}
		})
	}
}

// runEndToEnd measures one run. With flood, one more member of the room
// sends poses and control messages as fast as it can for the whole run (its
// rate-limit grace is an hour, so it is throttled, never closed), and the
// tick duration histogram is reported too.
func runEndToEnd(b *testing.B, members, hz int, duration time.Duration, flood bool) {
	var ticksMu sync.Mutex
	var ticks []float64 // microseconds
	ts := startServer(b, func(c *Config, r *rooms.Config) {
		r.Tick = 200 * time.Millisecond
		r.OnTick = func(_, d time.Duration) {
			ticksMu.Lock()
			ticks = append(ticks, float64(d.Microseconds()))
			ticksMu.Unlock()
		}
		c.RateGrace = time.Hour
	})
	current, _ := ts.certs.Hashes()

	var mu sync.Mutex
	var latencies []float64 // milliseconds
	floodSlot := -1         // the flooder's poses are not honest ones to time
	record := func(slot uint16, rec []byte, received time.Time) {
		sent := codec.PoseTime(rec)
		ms := float64(int32(uint32(received.UnixMilli()) - sent))
		mu.Lock()
		if int(slot) != floodSlot {
			latencies = append(latencies, ms)
		}
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Second)
	defer cancel()
	clients := make([]*client.Client, members)
	for i := range clients {
		c, err := client.Dial(ctx, client.Config{
			URL:        ts.URL(),
			CertHashes: []certs.Hash{current},
			OnPoses:    func(slot uint16, rec []byte, at time.Time) { record(slot, rec, at) },
		})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Join(ctx, codec.Join{Room: "bench"}); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	mu.Lock()
	latencies = latencies[:0] // count only the steady state
	mu.Unlock()

	start := time.Now()
	var wg sync.WaitGroup
	if flood {
		f, err := client.Dial(ctx, client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}})
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		j, err := f.Join(ctx, codec.Join{Room: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		floodSlot = j.Slot
		mu.Unlock()
		wg.Go(func() {
			for i := uint32(0); time.Since(start) < duration; i++ {
				f.SendPose(pose(i, float64(i%100), 1, 1))
				if i%64 == 0 {
					f.Send(&codec.Ping{})
					time.Sleep(time.Millisecond) // leave the machine's cores to the others now and then
				}
			}
		})
	}
	for i, c := range clients {
		wg.Go(func() {
			// Spread the senders over the period, as real headsets are.
			period := time.Second / time.Duration(hz)
			time.Sleep(period * time.Duration(i) / time.Duration(members))
			tick := time.NewTicker(period)
			defer tick.Stop()
			for now := range tick.C {
				if now.Sub(start) > duration {
					return
				}
				a := now.Sub(start).Seconds() + float64(i)
				p := pose(uint32(now.UnixMilli()), 3*math.Cos(a/5), 1.6, 3*math.Sin(a/5))
				c.SendPose(p)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(quantile(latencies, 0.5), "p50-ms")
	b.ReportMetric(quantile(latencies, 0.99), "p99-ms")
	ticksMu.Lock()
	b.ReportMetric(quantile(ticks, 0.99), "tick-p99-µs")
	ticksMu.Unlock()
	if flood {
		b.ReportMetric(testutil.ToFloat64(ts.metrics.rejPoseRate)/elapsed.Seconds(), "flood-dropped/s")
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "updates/s")
	b.ReportMetric(float64(members*hz), "poses-in/s")
}

// quantile returns the value at quantile p of values, sorting them.
func quantile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	slices.Sort(values)
	return values[min(len(values)-1, int(p*float64(len(values))))]
}
