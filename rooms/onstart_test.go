package rooms_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// However hooks and room starts interleave, a hook is called exactly once
// for each start of a room that is running once both are done.
func TestOnRoomStartSeesEveryRoomOnce(t *testing.T) {
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const hooks, roomCount = 4, 24
	var mu sync.Mutex
	seen := make([]map[string]int, hooks)
	var wg sync.WaitGroup
	for h := range hooks {
		seen[h] = make(map[string]int)
		wg.Go(func() {
			stop := reg.OnRoomStart(func(r *rooms.Room) {
				mu.Lock()
				seen[h][r.ID()]++
				mu.Unlock()
			})
			t.Cleanup(stop)
		})
	}
	for i := range roomCount {
		wg.Go(func() {
			if _, err := reg.Join(context.Background(), fmt.Sprintf("room-%d", i), quietMember{}, rooms.JoinRequest{User: "ada", Device: "d"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for h := range hooks {
		if len(seen[h]) != roomCount {
			t.Errorf("hook %d saw %d rooms, want %d", h, len(seen[h]), roomCount)
		}
		for room, n := range seen[h] {
			if n != 1 {
				t.Errorf("hook %d saw %s %d times", h, room, n)
			}
		}
	}
}

// A room that stops with people in it shows them all leaving.
func TestHandleMetasSeesARoomThatStopsEmptied(t *testing.T) {
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{})
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan rooms.MetasChange, 16)
	stop := reg.HandleMetas(func(c rooms.MetasChange) { changes <- c })
	defer stop()
	if _, err := reg.Join(context.Background(), "plaza", quietMember{}, rooms.JoinRequest{User: "ada", Device: "d"}); err != nil {
		t.Fatal(err)
	}
	if c := <-changes; len(c.Joins) != 1 || len(c.Metas["ada"]) != 1 {
		t.Fatalf("first change %+v, want ada joining", c)
	}
	reg.Close()
	c := <-changes
	if _, left := c.Leaves["ada"]; !left || c.Room != "plaza" || len(c.Metas["ada"]) != 0 || len(c.Joins) != 0 {
		t.Errorf("change as the room stopped: %+v, want ada leaving with no metas", c)
	}
}

// The fetch hook sees a diff's joins and leaves in one call, and what it
// adds reaches the members on both sides.
func TestFetchPresenceAddsToEveryDiffInOneBatch(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{
		FetchPresence: func(_ string, entries map[string]codec.PresenceEntry) {
			mu.Lock()
			batches = append(batches, slices.Sorted(maps.Keys(entries)))
			mu.Unlock()
			for user, e := range entries {
				e.Extra = map[string]any{"profile": "of " + user}
				entries[user] = e
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	watcher := presenceMember{msgs: make(chan codec.Message, 16)}
	nextDiff := func() *codec.PresenceDiff {
		for {
			if d, ok := (<-watcher.msgs).(*codec.PresenceDiff); ok {
				return d
			}
		}
	}
	if _, err := reg.Join(ctx, "plaza", watcher, rooms.JoinRequest{User: "bob", Device: "d"}); err != nil {
		t.Fatal(err)
	}
	nextDiff() // bob's own join
	ada, err := reg.Join(ctx, "plaza", quietMember{}, rooms.JoinRequest{User: "ada", Device: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if d := nextDiff(); d.Joins["ada"].Extra["profile"] != "of ada" {
		t.Errorf("ada's join %+v, want her profile beside her metas", d.Joins["ada"])
	}
	if err := ada.UpdateMeta(map[string]any{"status": "away"}); err != nil {
		t.Fatal(err)
	}
	d := nextDiff()
	if d.Joins["ada"].Extra["profile"] != "of ada" || d.Leaves["ada"].Extra["profile"] != "of ada" {
		t.Errorf("ada's update %+v, want her profile on both sides", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if last := batches[len(batches)-1]; !slices.Equal(last, []string{"ada"}) {
		t.Errorf("the update's batch %v, want ada once", last)
	}
}
