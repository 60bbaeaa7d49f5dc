package rooms_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/rooms"
)

func TestEntityAndWorldSizesAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxWorldBytes = 64 << 10
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		m := w.join("lobby", "ada", newMember(t, "ada"))
		big := strings.Repeat("x", rooms.MaxEntityBytes)
		if _, err := m.CreateEntity(rooms.Components{"blob": big}, nil); !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("an entity over %d bytes: %v, want ErrInvalid", rooms.MaxEntityBytes, err)
		}
		chunk := strings.Repeat("y", 10<<10)
		var ids []string
		for {
			id, err := m.CreateEntity(rooms.Components{"blob": chunk}, nil)
			if err != nil {
				if !errors.Is(err, rooms.ErrInvalid) {
					t.Fatalf("filling the world: %v", err)
				}
				break
			}
			ids = append(ids, id)
		}
		if len(ids) < 4 || len(ids) > 6 {
			t.Errorf("%d entities of 10 KiB fit in a 64 KiB world", len(ids))
		}
		if err := m.UpdateEntity(ids[0], rooms.Components{"more": chunk}, nil); !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("growing an entity past the world's bound: %v, want ErrInvalid", err)
		}
		if err := m.UpdateEntity(ids[0], rooms.Components{"blob": "small"}, nil); err != nil {
			t.Errorf("shrinking an entity: %v", err)
		}
		must(t, m.DeleteEntity(ids[1], nil))
		if _, err := m.CreateEntity(rooms.Components{"blob": chunk}, nil); err != nil {
			t.Errorf("creating after deletes freed room: %v", err)
		}
	})
}

func TestPresenceMetaIsBounded(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		meta := map[string]any{"avatar_url": strings.Repeat("z", rooms.MaxMetaBytes)}
		_, err := w.reg.Join(context.Background(), "lobby", newMember(t, "ada"), rooms.JoinRequest{User: "ada", Meta: meta})
		if !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("a join with an oversized meta: %v, want ErrInvalid", err)
		}
	})
}

func TestRoomsPerNodeAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRooms = 2
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		w.join("a", "ada", newMember(t, "ada"))
		w.join("b", "bob", newMember(t, "bob"))
		_, err := w.reg.Join(context.Background(), "c", newMember(t, "cy"), rooms.JoinRequest{User: "cy"})
		if !errors.Is(err, rooms.ErrTooManyRooms) {
			t.Errorf("a third room: %v, want ErrTooManyRooms", err)
		}
		w.join("a", "dan", newMember(t, "dan")) // a live room takes joins still
	})
}

func TestOnTickSeesEveryTickAndHowLateItBegan(t *testing.T) {
	cfg := testConfig()
	var mu sync.Mutex // guards the following, shared with the tick goroutine
	var late []time.Duration
	overrun := false // the next tick's hook runs a tick and a half long
	cfg.OnTick = func(l, _ time.Duration) {
		mu.Lock()
		late = append(late, l)
		sleep := overrun
		overrun = false
		mu.Unlock()
		if sleep {
			time.Sleep(cfg.Tick * 3 / 2)
		}
	}
	observed := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(late)
	}
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		w.join("a", "ada", newMember(t, "ada"))
		w.ticks(5)
		got := observed()
		if len(got) != 5 {
			t.Errorf("OnTick called %d times in 5 ticks", len(got))
		}
		for i, l := range got {
			if l != 0 {
				t.Errorf("tick %d began %v late on an idle node", i, l)
			}
		}
		// One tick overruns into the next period: the next begins late by
		// what the overrun took past it, and the one after is on time.
		mu.Lock()
		overrun, late = true, nil
		mu.Unlock()
		w.ticks(4)
		if got := observed(); len(got) < 3 || got[0] != 0 || got[1] != cfg.Tick/2 || got[2] != 0 {
			t.Errorf("around an overrun of half a tick, ticks began %v late; want 0, %v, 0", got, cfg.Tick/2)
		}
	})
}

func TestTheStoreBacklogIsBoundedInBytes(t *testing.T) {
	store := &gatedStore{}
	cfg := testConfig()
	cfg.MaxPendingBytes = 100 << 10
	inBubble(t, cfg, store, func(t *testing.T, w *world) {
		a := w.join("a", "ada", newMember(t, "ada"))
		b := w.join("b", "bob", newMember(t, "bob"))
		store.setDown(true)
		chunk := strings.Repeat("z", 10<<10)
		accepted := 0
		for i := 0; ; i++ {
			m := a
			if i%2 == 1 {
				m = b // the bound is the node's, across rooms
			}
			if _, err := m.CreateEntity(rooms.Components{"blob": chunk}, nil); err != nil {
				if !errors.Is(err, rooms.ErrStoreBacklog) {
					t.Fatalf("while the store is down: %v", err)
				}
				break
			}
			accepted++
		}
		if accepted < 8 || accepted > 10 {
			t.Errorf("%d changes of 10 KiB queued under a 100 KiB bound", accepted)
		}
		store.setDown(false)
		w.ticks(50) // past the longest backoff
		if _, err := a.CreateEntity(rooms.Components{"blob": chunk}, nil); err != nil {
			t.Errorf("after the store came back: %v", err)
		}
	})
}

func TestWhatAMemberMakesTheRoomSendIsBudgeted(t *testing.T) {
	cfg := testConfig()
	cfg.MemberBytes, cfg.RoomBytes = 10<<10, 25<<10 // bursts of 40 and 100 KiB
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		blob := strings.Repeat("x", 9<<10)
		members := make([]*rooms.Membership, 4)
		for i := range members {
			members[i] = w.join("lobby", fmt.Sprint("u", i), newMember(t, fmt.Sprint("u", i)))
		}
		sent := func(m *rooms.Membership, n int) (ok int, err error) {
			for range n {
				if err = m.Publish("blob", blob); err != nil {
					return ok, err
				}
				ok++
			}
			return ok, nil
		}
		// A member's burst is four seconds of its rate.
		if ok, err := sent(members[0], 10); ok != 4 || !errors.Is(err, rooms.ErrRateLimited) {
			t.Errorf("first member sent %d and was told %v; want 4, then ErrRateLimited", ok, err)
		}
		// The room's burst is shared: after two members' bursts, a third
		// gets what is left.
		sent(members[1], 4)
		if ok, err := sent(members[2], 4); ok != 3 || !errors.Is(err, rooms.ErrRateLimited) {
			t.Errorf("third member sent %d and was told %v; want the room's last 3, then ErrRateLimited", ok, err)
		}
		// Both refill with time, and a refused change costs nothing.
		time.Sleep(time.Second)
		if _, err := members[3].CreateEntity(rooms.Components{"bad name!": true}, nil); !errors.Is(err, rooms.ErrInvalid) {
			t.Fatalf("an invalid change: %v", err)
		}
		if ok, _ := sent(members[3], 3); ok != 2 {
			t.Errorf("after a second the fourth member sent %d; want the room's refill of about 2", ok)
		}
	})
}
