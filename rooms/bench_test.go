package rooms

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
)

// countingMember is a Member that only counts what it is sent, so that
// benchmarks measure the room, not the member.
type countingMember struct {
	maxDatagram int
	datagrams   atomic.Int64
	bytes       atomic.Int64
	frames      atomic.Int64
}

func (c *countingMember) SendPoses(_ uint32, parts [][][]byte) {
	n := 0
	for _, runs := range parts {
		n += codec.PosesHeaderSize
		for _, r := range runs {
			n += len(r)
		}
	}
	c.datagrams.Add(int64(max(1, len(parts))))
	c.bytes.Add(int64(max(codec.PosesHeaderSize, n)))
}

func (c *countingMember) SendFrame([]byte) { c.frames.Add(1) }

func (c *countingMember) MaxDatagramSize() int { return c.maxDatagram }

func (c *countingMember) Close(*codec.Goodbye) {}

func (c *countingMember) reset() {
	c.datagrams.Store(0)
	c.bytes.Store(0)
	c.frames.Store(0)
}

// newQuietRoom returns a loaded room with n users joined, one device each,
// whose tick runs only when the caller calls it: no goroutines run.
func newQuietRoom(tb testing.TB, n int) (*Room, []*Membership, []*countingMember) {
	tb.Helper()
	return newQuietRoomOf(tb, n, Interest{})
}

// newQuietRoomOf is newQuietRoom with its interest management.
func newQuietRoomOf(tb testing.TB, n int, interest Interest) (*Room, []*Membership, []*countingMember) {
	tb.Helper()
	reg, err := NewRegistry(&MemoryStore{}, Config{MaxMembers: max(n, 256), Interest: interest, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	r := newRoom(reg, "bench")
	if err := r.load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	ms := make([]*Membership, n)
	cms := make([]*countingMember, n)
	for i := range n {
		cms[i] = &countingMember{maxDatagram: codec.MaxDatagramSize}
		ms[i], err = r.join(cms[i], JoinRequest{User: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("user %d", i)})
		if err != nil {
			tb.Fatal(err)
		}
	}
	r.tick(time.Now(), 0) // send the joins' diffs
	for _, c := range cms {
		c.reset()
	}
	return r, ms, cms
}

// BenchmarkTick measures a tick of a room in which every member moved since
// the last and every member gets every avatar (no interest management):
// collecting the poses, encoding them once and handing the datagrams to
// every member. Each op writes a fresh pose to every slot, as the sessions
// would, then runs the tick: ns/op covers both, ns/tick the tick alone. The
// writes do not allocate, so allocs/op are the tick's.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{10, 50, 200} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r, ms, cms := newQuietRoomOf(b, n, Interest{Disabled: true})
			// Two head poses per member, a step apart, so that each tick
			// sees every avatar move.
			recs := make([][2][]byte, n)
			for i := range recs {
				for k := range 2 {
					recs[i][k] = poseRecord(uint32(k), float64(i)/10, 1.6+float64(k)/100, -float64(i)/10, false)
				}
			}
			ticks, inTick := moveAndTick(b, r, ms, recs)
			b.ReportMetric(float64(inTick.Nanoseconds())/float64(ticks), "ns/tick")
			b.ReportMetric(float64(cms[0].bytes.Load())/float64(ticks), "bytes/member/tick")
			b.ReportMetric(float64(cms[0].datagrams.Load())/float64(ticks), "datagrams/tick")
			if f := cms[0].frames.Load(); f != 0 {
				b.Errorf("a tick of moving avatars sent %d frames", f)
			}
		})
	}
}

// moveAndTick is the loop of the tick benchmarks: each op writes every
// member's next pose (alternating between its two records, so that each
// tick sees every avatar move), as the sessions would, then runs the tick.
// It returns the ticks run and the time spent in them alone.
func moveAndTick(b *testing.B, r *Room, ms []*Membership, recs [][2][]byte) (ticks int, inTick time.Duration) {
	b.ReportAllocs()
	for b.Loop() {
		for i, m := range ms {
			if moved, err := m.UpdatePose(recs[i][ticks&1]); err != nil || !moved {
				b.Fatalf("UpdatePose = %v, %v", moved, err)
			}
		}
		start := time.Now()
		r.tick(start, 0)
		inTick += time.Since(start)
		ticks++
	}
	return ticks, inTick
}

// BenchmarkTickBigRoom measures a tick of a big room whose members all
// moved since the last, standing at random on a floor of 4 m² a member (a
// dense crowd in places, gaps in others), with every member getting every
// avatar ("everyone") and with interest management's defaults ("interest":
// near avatars at every tick, far ones every 4th). Per tick: the room's
// work (ns/tick, and per member), and what a member gets on average.
func BenchmarkTickBigRoom(b *testing.B) {
	for _, n := range []int{200, 1000, 4000} {
		for _, mode := range []struct {
			name     string
			interest Interest
		}{{"everyone", Interest{Disabled: true}}, {"interest", Interest{}}} {
			b.Run(fmt.Sprintf("members=%d/%s", n, mode.name), func(b *testing.B) {
				r, ms, cms := newQuietRoomOf(b, n, mode.interest)
				side := math.Sqrt(4 * float64(n))
				rng := rand.New(rand.NewPCG(uint64(n), 1))
				recs := make([][2][]byte, n)
				for i := range recs {
					x, z := rng.Float64()*side, rng.Float64()*side
					for k := range 2 {
						recs[i][k] = poseRecord(uint32(k), x, 1.6+float64(k)/5, z, false) // 20 cm: far members get it too
					}
				}
				ticks, inTick := moveAndTick(b, r, ms, recs)
				var bytes, datagrams int64
				for _, c := range cms {
					bytes += c.bytes.Load()
					datagrams += c.datagrams.Load()
				}
				perTick := float64(inTick.Nanoseconds()) / float64(ticks)
				b.ReportMetric(perTick, "ns/tick")
				b.ReportMetric(perTick/float64(n), "ns/tick/member")
				b.ReportMetric(float64(bytes)/float64(ticks*n), "bytes/member/tick")
				b.ReportMetric(float64(datagrams)/float64(ticks*n), "datagrams/member/tick")
			})
		}
	}
}

// BenchmarkUpdatePose measures the hot path of a session: storing a pose
// from a datagram in the avatar's slot.
func BenchmarkUpdatePose(b *testing.B) {
	b.Run("one session", func(b *testing.B) {
		_, ms, _ := newQuietRoom(b, 1)
		recs := [2][]byte{poseRecord(1, 1, 1.6, 1, true), poseRecord(2, 1.01, 1.6, 1, true)}
		b.ReportAllocs()
		b.SetBytes(int64(len(recs[0])))
		i := 0
		for b.Loop() {
			i++
			if _, err := ms[0].UpdatePose(recs[i&1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel sessions", func(b *testing.B) {
		_, ms, _ := newQuietRoom(b, 256)
		recs := [2][]byte{poseRecord(1, 1, 1.6, 1, true), poseRecord(2, 1.01, 1.6, 1, true)}
		var next atomic.Int64
		b.ReportAllocs()
		b.SetBytes(int64(len(recs[0])))
		b.RunParallel(func(pb *testing.PB) {
			m := ms[int(next.Add(1)-1)%len(ms)]
			i := 0
			for pb.Next() {
				i++
				if _, err := m.UpdatePose(recs[i&1]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func TestUpdatePoseDoesNotAllocate(t *testing.T) {
	_, ms, _ := newQuietRoom(t, 2)
	recs := [2][]byte{poseRecord(1, 1, 1.6, 1, true), poseRecord(2, 1.01, 1.6, 1, false)}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		if _, err := ms[1].UpdatePose(recs[i&1]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("UpdatePose: %v allocs per run, want 0", allocs)
	}
	// Refusals are on the hot path too.
	ms[0].Leave()
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := ms[0].UpdatePose(recs[0]); err != ErrNotDriver {
			t.Fatalf("UpdatePose after leaving = %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("a refused UpdatePose: %v allocs per run, want 0", allocs)
	}
}

// BenchmarkEntitiesState encodes a room's state, as a join or a resync
// sends it, for a world of 10 000 environment entities (about 670 KB): once
// per world change, then again for every join and resync.
func BenchmarkEntitiesState(b *testing.B) {
	reg, err := NewRegistry(&MemoryStore{}, Config{Logger: slog.New(slog.DiscardHandler), MaxWorldBytes: 4 << 20, MaxEntities: 20000})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	r := newRoom(reg, "hall")
	if err := r.load(context.Background()); err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		r.entities[fmt.Sprint("e", i)] = Components{"obstacle": map[string]any{"shape": "box", "size": []any{1.0, 2.0, 3.0}}, "position": []any{float64(i), 0.5, -2.25}}
	}
	for _, changed := range []bool{true, false} {
		name := "unchanged_world"
		if changed {
			name = "world_changed_each_time"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.mu.Lock()
				if changed {
					r.encodedWorld = nil
				}
				frame, err := codec.EncodeFrame(r.entitiesStateLocked(&Membership{}))
				r.mu.Unlock()
				if err != nil || len(frame) < 500<<10 {
					b.Fatalf("state of %d bytes: %v", len(frame), err)
				}
			}
		})
	}
}
