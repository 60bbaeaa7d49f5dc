package rooms_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// TestSessionsRunConcurrentlyWithTheTick drives a room from many goroutines
// at once, as sessions do, for the race detector to watch: poses, entity
// changes, events, devices coming and going, all while the tick runs.
func TestSessionsRunConcurrentlyWithTheTick(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		const users = 8
		members := make([]*fakeMember, users)
		ms := make([]*rooms.Membership, users)
		for i := range ms {
			members[i] = newMember(t, fmt.Sprintf("m%d", i))
			ms[i] = w.join("lobby", fmt.Sprintf("u%d", i), members[i])
		}
		room := w.reg.Room("lobby")
		var rec recorder
		defer room.Subscribe(rec.listen)()

		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Go(func() { // a session's pose stream
				for n := range 100 {
					if _, err := m.UpdatePose(handsPose(uint32(n), float64(i), 1.6, float64(n)/100)); err != nil {
						t.Errorf("%s: UpdatePose: %v", m.User(), err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
		wg.Go(func() { // a session changing the world
			for n := range 50 {
				id, err := ms[0].CreateEntity(rooms.Components{"n": n}, nil)
				if err != nil {
					t.Errorf("CreateEntity: %v", err)
					return
				}
				if err := ms[1].UpdateEntity(id, rooms.Components{"m": n}, nil); err != nil {
					t.Errorf("UpdateEntity: %v", err)
				}
				if n%2 == 0 {
					if err := ms[2].DeleteEntity(id, nil); err != nil {
						t.Errorf("DeleteEntity: %v", err)
					}
				}
				if err := ms[3].Publish("ping", n); err != nil {
					t.Errorf("Publish: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		wg.Go(func() { // devices coming and going, one of them dropping
			for n := range 20 {
				extra := newMember(t, "extra")
				d, err := w.reg.Join(t.Context(), "lobby", extra, rooms.JoinRequest{User: fmt.Sprintf("x%d", n%3), Device: "d"})
				if err != nil {
					t.Errorf("Join: %v", err)
					return
				}
				d.UpdatePose(pose(uint32(n), 1, 1, 1))
				if err := d.Resync(); err != nil {
					t.Errorf("Resync: %v", err)
				}
				time.Sleep(150 * time.Millisecond)
				if n%2 == 0 {
					d.Leave()
				} else {
					d.Disconnect(time.Now())
				}
			}
		})
		wg.Go(func() { // someone watching the room
			for range 40 {
				room.Stats()
				w.reg.Rooms()
				time.Sleep(125 * time.Millisecond)
			}
		})
		wg.Wait()
		w.ticks(1)

		for _, m := range members {
			frames, dgs := m.take()
			if len(dgs) < 20 || len(only[*codec.EntitiesDiff](frames)) == 0 || len(only[*codec.Event](frames)) == 0 {
				t.Errorf("%s got %d datagrams, %d frames", m.name, len(dgs), len(frames))
			}
		}
		rec.mu.Lock()
		heard := len(rec.events)
		rec.mu.Unlock()
		if heard == 0 {
			t.Errorf("the listener heard nothing")
		}
		for _, m := range ms {
			if _, err := m.UpdatePose(pose(1, 0, 0, 0)); errors.Is(err, rooms.ErrNotDriver) {
				t.Errorf("%s no longer drives its avatar", m.User())
			}
		}
	})
}
