package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms"
)

// benchChange returns the i-th change of the benchmarks: a door among 100
// that moves and opens or closes, as an application's event would.
func benchChange(i int) rooms.Change {
	return rooms.Change{Entity: fmt.Sprint("door", i%100), Set: rooms.Components{
		"position": []any{float64(i%20) / 2, 0, 3.5},
		"open":     i%2 == 0,
	}}
}

func benchStore(b *testing.B) (*Store, context.Context) {
	ctx := b.Context()
	s, err := Open(ctx, pgtest.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if _, err := s.CreateRoom(ctx, rooms.RoomInfo{ID: "hall", Name: "hall", CreatedAt: time.Now()}, nil); err != nil {
		b.Fatal(err)
	}
	return s, ctx
}

// BenchmarkApply writes entity changes straight to the store: one
// autocommitted statement per change, as a writer without batches would,
// against Apply with batches of several sizes (one transaction, one round
// trip each). The metric that matters is changes/s.
func BenchmarkApply(b *testing.B) {
	b.Run("one statement per change", func(b *testing.B) {
		s, ctx := benchStore(b)
		for i := 0; b.Loop(); i++ {
			ch := benchChange(i)
			if _, err := s.pool.Exec(ctx, sqlSet, "hall", ch.Entity, ch.Set); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
	})
	for _, size := range []int{1, 10, 100, 500} {
		b.Run(fmt.Sprintf("batches of %d", size), func(b *testing.B) {
			s, ctx := benchStore(b)
			batch := make([]rooms.Change, size)
			changes := 0
			for b.Loop() {
				for j := range batch {
					batch[j] = benchChange(changes + j)
				}
				if err := s.Apply(ctx, "hall", rooms.Claim{}, batch); err != nil {
					b.Fatal(err)
				}
				changes += size
			}
			b.ReportMetric(float64(changes)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// benchMember is a rooms.Member that ignores what rooms send it.
type benchMember struct{}

func (benchMember) SendPoses(uint32, [][][]byte) {}
func (benchMember) SendFrame([]byte)             {}
func (benchMember) MaxDatagramSize() int         { return 1200 }
func (benchMember) Close(*codec.Goodbye)         {}

// BenchmarkSyncer changes entities through rooms as fast as they accept,
// and counts the time until the store holds every change: the throughput
// of the rooms' syncers, batching per interval and by size, on PostgreSQL.
// A change refused for a full backlog is tried again.
func BenchmarkSyncer(b *testing.B) {
	for _, nrooms := range []int{1, 10} {
		b.Run(fmt.Sprintf("%d rooms", nrooms), func(b *testing.B) {
			s, ctx := benchStore(b)
			reg, err := rooms.NewRegistry(s, rooms.Config{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer reg.Close()
			type door struct {
				m  *rooms.Membership
				id string
			}
			doors := make([]door, nrooms)
			for i := range doors {
				m, err := reg.Join(ctx, fmt.Sprint("room", i), benchMember{}, rooms.JoinRequest{User: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				id, err := m.CreateEntity(rooms.Components{"door": true}, nil)
				if err != nil {
					b.Fatal(err)
				}
				doors[i] = door{m, id}
			}
			refused := 0
			b.ResetTimer()
			for i := range b.N {
				d := doors[i%nrooms]
				for {
					err := d.m.UpdateEntity(d.id, benchChange(i).Set, nil)
					if err == nil {
						break
					}
					if !errors.Is(err, rooms.ErrStoreBacklog) {
						b.Fatal(err)
					}
					refused++
					time.Sleep(time.Millisecond)
				}
			}
			for reg.PendingChanges() > 0 {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
			b.ReportMetric(float64(refused)/float64(b.N), "refusals/change")
		})
	}
}
