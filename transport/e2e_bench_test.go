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

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
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
	for _, members := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			for b.Loop() {
				runEndToEnd(b, members, 20, duration)
			}
		})
	}
}

func runEndToEnd(b *testing.B, members, hz int, duration time.Duration) {
	ts := startServer(b, func(c *Config, r *rooms.Config) { r.Tick = 200 * time.Millisecond })
	current, _ := ts.certs.Hashes()

	var mu sync.Mutex
	var latencies []float64 // milliseconds
	record := func(rec []byte, received time.Time) {
		sent := codec.PoseTime(rec)
		ms := float64(int32(uint32(received.UnixMilli()) - sent))
		mu.Lock()
		latencies = append(latencies, ms)
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Second)
	defer cancel()
	clients := make([]*Client, members)
	for i := range clients {
		c, err := Dial(ctx, ClientConfig{
			URL:        ts.URL(),
			CertHashes: []certs.Hash{current},
			OnPoses:    func(_ uint16, rec []byte, at time.Time) { record(rec, at) },
		})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Join(ctx, codec.Join{Room: "bench", User: fmt.Sprint("m", i)}); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	mu.Lock()
	latencies = latencies[:0] // count only the steady state
	mu.Unlock()

	start := time.Now()
	var wg sync.WaitGroup
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
	slices.Sort(latencies)
	q := func(p float64) float64 {
		if len(latencies) == 0 {
			return math.NaN()
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "updates/s")
	b.ReportMetric(float64(members*hz), "poses-in/s")
}
