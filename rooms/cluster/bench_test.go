package cluster_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/posecast/posecast/transport/client"
)

// withDefaults gives a benchmark's nodes posecast's default timings, and,
// with POSECAST_BENCH_NATS set (nats://host:port), that NATS server instead
// of the in-process cluster, with one replica per bucket.
func withDefaults(h *harness) {
	h.heartbeat, h.suspect, h.leaseTTL = time.Second, 3*time.Second, 6*time.Second
	h.interval, h.idle = 3*time.Second, 5*time.Second
	if u := os.Getenv("POSECAST_BENCH_NATS"); u != "" {
		h.nats = [3]string{u, u, u}
		h.replicas = 1
	}
}

// percentile returns the q-quantile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	i := min(len(sorted)-1, int(q*float64(len(sorted))))
	return float64(sorted[i].Microseconds()) / 1000
}

// BenchmarkClaim measures claiming a room in the directory: one
// compare-and-swap create on a JetStream KV bucket of three replicas,
// across the in-process NATS cluster (or of one, on POSECAST_BENCH_NATS).
// Each op claims a new room.
func BenchmarkClaim(b *testing.B) {
	h := newHarness(b)
	withDefaults(h)
	a := h.startNode("a", 0)
	var took []time.Duration
	ctx := context.Background()
	i := 0
	for b.Loop() {
		start := time.Now()
		if _, err := a.node.Claim(ctx, fmt.Sprint("room", i)); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		i++
	}
	slices.Sort(took)
	b.ReportMetric(percentile(took, 0.5), "p50-ms")
	b.ReportMetric(percentile(took, 0.99), "p99-ms")
}

// BenchmarkSteadyState counts what three nodes send over NATS while 100
// rooms of 3 users each run on one of them and nothing changes: the
// cluster's standing cost, per node and per room. Each op is 10 seconds of
// it.
func BenchmarkSteadyState(b *testing.B) {
	h := newHarness(b)
	withDefaults(h)
	a, _, c := h.startNode("a", 0), h.startNode("b", 1), h.startNode("c", 2)
	const roomsN, perRoom = 100, 3
	for r := range roomsN {
		for u := range perRoom {
			h.connect(a, fmt.Sprint("room", r), fmt.Sprint("u", u))
		}
	}
	watcher, sub := h.watch(c, ".")
	eventually(b, "every user in the collection", func() bool {
		n := 0
		for _, us := range watcher.View().Collections[sub] {
			n += len(us)
		}
		return n == roomsN*perRoom
	})
	nc, err := nats.Connect(h.nats[0])
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var msgs, bytes atomic.Int64
	counted := func(m *nats.Msg) bool {
		s := m.Subject
		return strings.HasPrefix(s, h.prefix+".") || strings.HasPrefix(s, "$KV."+h.prefix+"_") ||
			strings.HasPrefix(s, "$JS.API.") || strings.HasPrefix(s, "_INBOX.")
	}
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		if counted(m) {
			msgs.Add(1)
			bytes.Add(int64(len(m.Subject) + len(m.Reply) + len(m.Data)))
		}
	}); err != nil {
		b.Fatal(err)
	}
	nc.Flush()
	const window = 10 * time.Second
	for b.Loop() {
		msgs.Store(0)
		bytes.Store(0)
		time.Sleep(window)
	}
	secs := window.Seconds()
	b.ReportMetric(float64(msgs.Load())/secs/3, "msgs/s/node")
	b.ReportMetric(float64(bytes.Load())/secs/3, "B/s/node")
	b.ReportMetric(float64(msgs.Load())/secs/roomsN, "msgs/s/room")
}

// BenchmarkPresenceTraffic counts the NATS traffic of presence changes: 100
// rooms on one node, in which one user a second leaves and comes back (two
// presence updates), for 10 seconds per op.
func BenchmarkPresenceTraffic(b *testing.B) {
	h := newHarness(b)
	withDefaults(h)
	a, _ := h.startNode("a", 0), h.startNode("b", 1)
	const roomsN = 100
	for r := range roomsN {
		h.connect(a, fmt.Sprint("room", r), "resident")
	}
	nc, err := nats.Connect(h.nats[0])
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var msgs, bytes atomic.Int64
	if _, err := nc.Subscribe(h.prefix+".presence.>", func(m *nats.Msg) {
		msgs.Add(1)
		bytes.Add(int64(len(m.Subject) + len(m.Data)))
	}); err != nil {
		b.Fatal(err)
	}
	nc.Flush()
	time.Sleep(time.Second) // the residents' joins are out
	const window = 10 * time.Second
	changes := 0
	for b.Loop() {
		msgs.Store(0)
		bytes.Store(0)
		changes = 0
		end := time.Now().Add(window)
		for r := 0; time.Now().Before(end); r++ {
			c, _ := h.connect(a, fmt.Sprint("room", r%roomsN), "visitor")
			time.Sleep(500 * time.Millisecond)
			c.Leave(context.Background())
			c.Close()
			changes += 2
			time.Sleep(500 * time.Millisecond)
		}
	}
	b.ReportMetric(float64(msgs.Load())/float64(changes), "msgs/change")
	b.ReportMetric(float64(bytes.Load())/float64(msgs.Load()), "B/msg")
}

// BenchmarkFailover kills a node (no goodbye: its clients' packets and its
// NATS links go dark) with 20 users in two rooms, at posecast's default
// timings, and reports how long the others take to declare it dead (its
// users dropped from their collections), for a subscriber's collection to
// show them gone, and for its clients to be back in through another node.
// Each op is one crash.
func BenchmarkFailover(b *testing.B) {
	var dead, vanish, rejoin []time.Duration
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b)
		withDefaults(h)
		a, v := h.startNode("a", 0), h.startNode("v", 1)
		var clients []*client.Client
		for i := range 20 {
			c, _ := h.connect(v, fmt.Sprint("lobby:", i%2), fmt.Sprint("u", i))
			clients = append(clients, c)
		}
		watcher, sub := h.watch(a, "^lobby:")
		eventually(b, "v's users in the collection", func() bool { return len(collectionOf(watcher, sub)) == 20 })
		b.StartTimer()

		_, before := v.reg.PresenceSnapshot(nil)
		vRefs := map[string]bool{}
		for _, us := range before {
			for _, metas := range us {
				for _, m := range metas {
					vRefs[m.Ref] = true
				}
			}
		}
		crashed := time.Now()
		v.crash()
		rejoined := make(chan time.Duration, len(clients))
		for i, c := range clients {
			go func() {
				<-c.Done()
				// As the page does: ask any node where the room is now,
				// and try again until it is placed.
				for {
					if _, _, err := h.tryConnect(a, fmt.Sprint("lobby:", i%2), fmt.Sprint("u", i)); err == nil {
						rejoined <- time.Since(crashed)
						return
					}
					time.Sleep(250 * time.Millisecond)
				}
			}()
		}
		for slices.Contains(a.collector.Nodes(), "v") {
			time.Sleep(10 * time.Millisecond)
		}
		dead = append(dead, time.Since(crashed))
		for holdsAny(watcher, sub, vRefs) {
			time.Sleep(10 * time.Millisecond)
		}
		vanish = append(vanish, time.Since(crashed))
		var last time.Duration
		for range clients {
			last = max(last, <-rejoined)
		}
		rejoin = append(rejoin, last)
		b.StopTimer()
		a.stop()
		v.stop()
		b.StartTimer()
	}
	for _, d := range [][]time.Duration{dead, vanish, rejoin} {
		slices.Sort(d)
	}
	b.ReportMetric(percentile(dead, 0.5)/1000, "dead-s")
	b.ReportMetric(percentile(vanish, 0.5)/1000, "vanish-s")
	b.ReportMetric(percentile(rejoin, 0.5)/1000, "rejoin-all-s")
}

// collectionOf lists a watcher's collection as room/user.
func collectionOf(c *client.Client, sub uint32) []string {
	var out []string
	for room, us := range c.View().Collections[sub] {
		for u := range us {
			out = append(out, room+"/"+u)
		}
	}
	return out
}

// holdsAny reports whether a watcher's collection holds a meta of refs.
func holdsAny(c *client.Client, sub uint32, refs map[string]bool) bool {
	for _, us := range c.View().Collections[sub] {
		for _, metas := range us {
			for _, m := range metas {
				if refs[m.Ref] {
					return true
				}
			}
		}
	}
	return false
}
