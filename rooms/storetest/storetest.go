// Package storetest is the contract every rooms.Store keeps, as a test
// suite that each implementation runs against itself.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posecast/posecast/rooms"
)

// Run runs the contract against stores made by newStore; each call must
// return an empty store of its own.
func Run(t *testing.T, newStore func(t *testing.T) rooms.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s rooms.Store)
	}{
		{"a room is created once with its entities", testCreateOnce},
		{"rooms are listed oldest first and deleted with their entities", testListAndDelete},
		{"rooms are listed a page at a time", testRoomPages},
		{"unknown rooms are ErrRoomNotFound", testUnknownRoom},
		{"entities having a component are found", testEntitiesWith},
		{"changes apply in order", testApplyInOrder},
		{"values keep their shape", testValues},
		{"results are copies", testResultsAreCopies},
		{"rooms change concurrently", testConcurrentApply},
		{"empty and large batches apply", testBatchSizes},
		{"entities having a component follow changes", testEntitiesWithFollowsChanges},
		{"a room deleted while changes arrive takes them with it", testDeleteWhileApplying},
		{"a cancelled context is an error", testCancelledContext},
		{"a fenced room takes writes from its newest claim alone", testFence},
		{"a fence lets no older write commit after it", testFenceRacesWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.test(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// same compares two values as JSON, which is how stores keep them.
func same(t *testing.T, got, want any) bool {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	return string(g) == string(w)
}

func info(id string, at time.Time) rooms.RoomInfo {
	return rooms.RoomInfo{ID: id, Name: "room " + id, CreatedAt: at.UTC().Truncate(time.Millisecond)}
}

func testCreateOnce(t *testing.T, s rooms.Store) {
	c := ctx(t)
	first := map[string]rooms.Components{"spawn": {"spawn_point": true, "position": []any{1.5, 0.1, -2.0}}}
	at := time.Now().Add(-time.Hour)
	created, err := s.CreateRoom(c, info("r1", at), first)
	if err != nil || !created {
		t.Fatalf("first CreateRoom = %v, %v; want created", created, err)
	}
	created, err = s.CreateRoom(c, info("r1", time.Now()), map[string]rooms.Components{"other": {"x": 1.0}})
	if err != nil || created {
		t.Fatalf("second CreateRoom = %v, %v; want not created", created, err)
	}
	got, err := s.Entities(c, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !same(t, got, first) {
		t.Errorf("entities %v, want %v", got, first)
	}
	want := info("r1", at)
	ri, err := s.Room(c, "r1")
	if err != nil || ri.ID != want.ID || ri.Name != want.Name || !ri.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("Room = %+v, %v; want %+v", ri, err, want)
	}
}

func testRoomPages(t *testing.T, s rooms.Store) {
	c := ctx(t)
	// Two rooms made in the same microsecond sort by id, byte by byte.
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	made := []rooms.RoomInfo{
		info("Zed", base.Add(time.Minute)), info("a", base), info("_b", base.Add(time.Minute)),
		info("c", base.Add(2*time.Minute)), info("d", base.Add(3*time.Minute)),
	}
	for _, ri := range made {
		if _, err := s.CreateRoom(c, ri, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := "[a Zed _b c d]"
	tests := []struct {
		name  string
		limit int
		pages string
	}{
		{"one page holds them all", 10, "[[a Zed _b c d]]"},
		{"pages of two", 2, "[[a Zed] [_b c] [d]]"},
		{"a page for each", 1, "[[a] [Zed] [_b] [c] [d] []]"},
		{"pages the size of the list", 5, "[[a Zed _b c d] []]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pages [][]string
			var all []string
			after := rooms.RoomCursor{}
			for range 10 {
				page, err := s.Rooms(c, after, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > tt.limit {
					t.Fatalf("a page of %d rooms, limit %d", len(page), tt.limit)
				}
				ids := []string{}
				for _, ri := range page {
					ids = append(ids, ri.ID)
				}
				pages, all = append(pages, ids), append(all, ids...)
				if len(page) < tt.limit {
					break
				}
				after = rooms.CursorAfter(page[len(page)-1])
			}
			if fmt.Sprint(pages) != tt.pages || fmt.Sprint(all) != want {
				t.Errorf("pages %v, want %s", pages, tt.pages)
			}
		})
	}
	if page, err := s.Rooms(c, rooms.RoomCursor{}, 0); err != nil || len(page) != 0 {
		t.Errorf("a page of 0 = %v, %v; want none", page, err)
	}
	// A cursor whose room is gone still marks a place.
	if err := s.DeleteRoom(c, "_b"); err != nil {
		t.Fatal(err)
	}
	page, err := s.Rooms(c, rooms.CursorAfter(made[2]), 10)
	if err != nil || len(page) != 2 || page[0].ID != "c" {
		t.Errorf("after a deleted room: %v, %v; want [c d]", page, err)
	}
}

func testListAndDelete(t *testing.T, s rooms.Store) {
	c := ctx(t)
	base := time.Now().Add(-time.Hour)
	for i, id := range []string{"b", "a", "c"} {
		if _, err := s.CreateRoom(c, info(id, base.Add(time.Duration(i)*time.Minute)), map[string]rooms.Components{"e": {"x": 1.0}}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.Rooms(c, rooms.RoomCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[b a c]" {
		t.Errorf("Rooms = %v, want [b a c]", ids)
	}
	if err := s.DeleteRoom(c, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Entities(c, "a"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("Entities of a deleted room = %v, want ErrRoomNotFound", err)
	}
	if err := s.DeleteRoom(c, "a"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("second DeleteRoom = %v, want ErrRoomNotFound", err)
	}
	// A deleted room can be created again, fresh.
	created, err := s.CreateRoom(c, info("a", time.Now()), nil)
	if err != nil || !created {
		t.Fatalf("recreate = %v, %v", created, err)
	}
	if got, err := s.Entities(c, "a"); err != nil || len(got) != 0 {
		t.Errorf("recreated room has %v, %v", got, err)
	}
}

func testUnknownRoom(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.Room(c, "nope"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("Room = %v", err)
	}
	if _, err := s.Entities(c, "nope"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("Entities = %v", err)
	}
	if _, err := s.EntitiesWith(c, "nope", "x"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("EntitiesWith = %v", err)
	}
	if err := s.Apply(c, "nope", rooms.Claim{}, []rooms.Change{{Entity: "e", Set: rooms.Components{"x": 1.0}}}); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("Apply = %v", err)
	}
}

func testEntitiesWith(t *testing.T, s rooms.Store) {
	c := ctx(t)
	entities := map[string]rooms.Components{
		"spawn": {"spawn_point": true, "position": []any{0.0, 0.1, 0.0}},
		"box1":  {"obstacle": map[string]any{"shape": "box"}, "position": []any{1.0, 0.5, 1.0}},
		"box2":  {"obstacle": map[string]any{"shape": "box"}, "position": []any{2.0, 0.5, 2.0}},
	}
	if _, err := s.CreateRoom(c, info("r", time.Now()), entities); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoom(c, info("other", time.Now()), map[string]rooms.Components{"spawn9": {"spawn_point": true}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		component string
		want      []string
	}{
		{"spawn_point", []string{"spawn"}},
		{"obstacle", []string{"box1", "box2"}},
		{"position", []string{"box1", "box2", "spawn"}},
		{"door", nil},
	}
	for _, tt := range tests {
		got, err := s.EntitiesWith(c, "r", tt.component)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("EntitiesWith(%q) = %v, want ids %v", tt.component, got, tt.want)
			continue
		}
		for _, id := range tt.want {
			if !same(t, got[id], entities[id]) {
				t.Errorf("EntitiesWith(%q)[%s] = %v, want all its components %v", tt.component, id, got[id], entities[id])
			}
		}
	}
}

func testApplyInOrder(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.CreateRoom(c, info("r", time.Now()), map[string]rooms.Components{"door": {"open": false, "hinge": "left"}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		changes []rooms.Change
		want    map[string]rooms.Components
	}{
		{
			"set merges components",
			[]rooms.Change{{Entity: "door", Set: rooms.Components{"open": true}}},
			map[string]rooms.Components{"door": {"open": true, "hinge": "left"}},
		},
		{
			"a later change to the same entity wins",
			[]rooms.Change{
				{Entity: "lamp", Set: rooms.Components{"on": true}},
				{Entity: "lamp", Set: rooms.Components{"on": false}},
				{Entity: "door", Unset: []string{"hinge"}},
			},
			map[string]rooms.Components{"door": {"open": true}, "lamp": {"on": false}},
		},
		{
			"unsetting the last component removes the entity",
			[]rooms.Change{{Entity: "lamp", Unset: []string{"on"}}},
			map[string]rooms.Components{"door": {"open": true}},
		},
		{
			"delete then create in one batch leaves the new entity",
			[]rooms.Change{{Entity: "door", Delete: true}, {Entity: "door", Set: rooms.Components{"open": false}}},
			map[string]rooms.Components{"door": {"open": false}},
		},
		{
			"delete removes every component",
			[]rooms.Change{{Entity: "door", Delete: true}, {Entity: "ghost", Delete: true}},
			map[string]rooms.Components{},
		},
	}
	for _, st := range steps {
		if err := s.Apply(c, "r", rooms.Claim{}, st.changes); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.Entities(c, "r")
		if err != nil {
			t.Fatal(err)
		}
		if !same(t, got, st.want) {
			t.Errorf("%s: entities %v, want %v", st.name, got, st.want)
		}
	}
}

func testValues(t *testing.T, s rooms.Store) {
	c := ctx(t)
	value := map[string]any{
		"text":   "héllo ✓",
		"int":    int64(-42),
		"big":    uint64(1 << 40),
		"float":  3.25,
		"bool":   true,
		"null":   nil,
		"list":   []any{1.0, "two", []any{3.0}, map[string]any{"four": 4.0}},
		"nested": map[string]any{"a": map[string]any{"b": map[string]any{"c": "deep"}}},
	}
	if _, err := s.CreateRoom(c, info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(c, "r", rooms.Claim{}, []rooms.Change{{Entity: "e", Set: rooms.Components{"v": value, "s": "plain"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !same(t, got["e"], rooms.Components{"v": value, "s": "plain"}) {
		t.Errorf("got %v", got["e"])
	}
}

func testResultsAreCopies(t *testing.T, s rooms.Store) {
	c := ctx(t)
	set := rooms.Components{"list": []any{1.0}, "map": map[string]any{"k": "v"}}
	if _, err := s.CreateRoom(c, info("r", time.Now()), map[string]rooms.Components{"e": set}); err != nil {
		t.Fatal(err)
	}
	set["list"].([]any)[0] = 99.0 // the caller's map changes after the call
	got, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	got["e"]["map"].(map[string]any)["k"] = "changed"
	again, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !same(t, again["e"], rooms.Components{"list": []any{1.0}, "map": map[string]any{"k": "v"}}) {
		t.Errorf("store shares memory with callers: %v", again["e"])
	}
}

func testConcurrentApply(t *testing.T, s rooms.Store) {
	c := ctx(t)
	const rooms_, changes = 4, 50
	for i := range rooms_ {
		if _, err := s.CreateRoom(c, info(fmt.Sprint("r", i), time.Now()), nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range rooms_ {
		wg.Go(func() {
			for n := range changes {
				if err := s.Apply(c, fmt.Sprint("r", i), rooms.Claim{}, []rooms.Change{{Entity: "counter", Set: rooms.Components{"n": float64(n)}}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range rooms_ {
		got, err := s.Entities(c, fmt.Sprint("r", i))
		if err != nil {
			t.Fatal(err)
		}
		if !same(t, got, map[string]rooms.Components{"counter": {"n": float64(changes - 1)}}) {
			t.Errorf("room %d: %v", i, got)
		}
	}
}

func testBatchSizes(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.CreateRoom(c, info("r", time.Now()), map[string]rooms.Components{"keep": {"n": 0.0}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(c, "r", rooms.Claim{}, nil); err != nil {
		t.Fatalf("an empty batch: %v", err)
	}
	const n = 2000
	batch := make([]rooms.Change, 0, n+1)
	want := map[string]rooms.Components{"keep": {"n": 0.0}}
	for i := range n {
		id := fmt.Sprint("e", i%100)
		batch = append(batch, rooms.Change{Entity: id, Set: rooms.Components{"i": float64(i), fmt.Sprint("c", i%7): true}})
		if want[id] == nil {
			want[id] = rooms.Components{}
		}
		want[id]["i"] = float64(i)
		want[id][fmt.Sprint("c", i%7)] = true
	}
	batch = append(batch, rooms.Change{Entity: "e0", Delete: true})
	delete(want, "e0")
	if err := s.Apply(c, "r", rooms.Claim{}, batch); err != nil {
		t.Fatalf("a batch of %d: %v", len(batch), err)
	}
	got, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	if !same(t, got, want) {
		t.Errorf("after a large batch the room holds %d entities, want %d: %v", len(got), len(want), got)
	}
}

func testEntitiesWithFollowsChanges(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.CreateRoom(c, info("r", time.Now()), map[string]rooms.Components{"door": {"open": false}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		change rooms.Change
		want   []string
	}{
		{"a component set later is found", rooms.Change{Entity: "door", Set: rooms.Components{"spawn_point": true}}, []string{"door"}},
		{"a new entity with it is found", rooms.Change{Entity: "pad", Set: rooms.Components{"spawn_point": 1.0}}, []string{"door", "pad"}},
		{"an unset component is not", rooms.Change{Entity: "door", Unset: []string{"spawn_point"}}, []string{"pad"}},
		{"a deleted entity is not", rooms.Change{Entity: "pad", Delete: true}, nil},
	}
	for _, st := range steps {
		if err := s.Apply(c, "r", rooms.Claim{}, []rooms.Change{st.change}); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.EntitiesWith(c, "r", "spawn_point")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for id := range got {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, st.want) {
			t.Errorf("%s: EntitiesWith = %v, want %v", st.name, ids, st.want)
		}
	}
}

func testDeleteWhileApplying(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.CreateRoom(c, info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			err := s.Apply(c, "r", rooms.Claim{}, []rooms.Change{{Entity: fmt.Sprint("e", i), Set: rooms.Components{"n": float64(i)}}})
			if errors.Is(err, rooms.ErrRoomNotFound) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	if err := s.DeleteRoom(c, "r"); err != nil {
		t.Error(err)
	}
	wg.Wait()
	if _, err := s.Entities(c, "r"); !errors.Is(err, rooms.ErrRoomNotFound) {
		t.Errorf("Entities after the delete = %v, want ErrRoomNotFound", err)
	}
	// Nothing of the old room survives into a new one of the same id.
	if _, err := s.CreateRoom(c, info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Entities(c, "r"); err != nil || len(got) != 0 {
		t.Errorf("the new room holds %v, %v", got, err)
	}
}

func testCancelledContext(t *testing.T, s rooms.Store) {
	if _, err := s.CreateRoom(ctx(t), info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateRoom", func() error { _, err := s.CreateRoom(c, info("x", time.Now()), nil); return err }},
		{"Room", func() error { _, err := s.Room(c, "r"); return err }},
		{"Rooms", func() error { _, err := s.Rooms(c, rooms.RoomCursor{}, 10); return err }},
		{"DeleteRoom", func() error { return s.DeleteRoom(c, "r") }},
		{"Entities", func() error { _, err := s.Entities(c, "r"); return err }},
		{"EntitiesWith", func() error { _, err := s.EntitiesWith(c, "r", "x"); return err }},
		{"Apply", func() error {
			return s.Apply(c, "r", rooms.Claim{}, []rooms.Change{{Entity: "e", Set: rooms.Components{"x": 1.0}}})
		}},
		{"Fence", func() error { return s.Fence(c, "r", at(1)) }},
	}
	for _, call := range calls {
		if err := call.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", call.name, err)
		}
	}
	if _, err := s.Room(ctx(t), "r"); err != nil {
		t.Errorf("the room after cancelled calls: %v", err)
	}
}

// at is the claim of epoch e in the directory of generation 1.
func at(e uint64) rooms.Claim { return rooms.Claim{Generation: 1, Epoch: e} }

func testFence(t *testing.T, s rooms.Store) {
	c := ctx(t)
	anew := rooms.Claim{Generation: 2, Epoch: 1} // a directory made anew
	if _, err := s.CreateRoom(c, info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	set := func(entity string) []rooms.Change {
		return []rooms.Change{{Entity: entity, Set: rooms.Components{"x": 1.0}}}
	}
	steps := []struct {
		name string
		call func() error
		want error
	}{
		{"an unfenced writer writes", func() error { return s.Apply(c, "r", rooms.Claim{}, set("free")) }, nil},
		{"a claim that has not fenced may not write", func() error { return s.Apply(c, "r", at(5), set("early")) }, rooms.ErrFenced},
		{"claim 5 fences", func() error { return s.Fence(c, "r", at(5)) }, nil},
		{"claim 5 fences again", func() error { return s.Fence(c, "r", at(5)) }, nil},
		{"claim 5 writes", func() error { return s.Apply(c, "r", at(5), set("five")) }, nil},
		{"claim 4 may not write", func() error { return s.Apply(c, "r", at(4), set("four")) }, rooms.ErrFenced},
		{"claim 3 may not fence", func() error { return s.Fence(c, "r", at(3)) }, rooms.ErrFenced},
		{"claim 9 fences", func() error { return s.Fence(c, "r", at(9)) }, nil},
		{"claim 5 may write no more", func() error { return s.Apply(c, "r", at(5), set("five-late")) }, rooms.ErrFenced},
		{"claim 9 writes", func() error { return s.Apply(c, "r", at(9), set("nine")) }, nil},
		{"the first claim of a directory made anew fences", func() error { return s.Fence(c, "r", anew) }, nil},
		{"it writes", func() error { return s.Apply(c, "r", anew, set("anew")) }, nil},
		{"claim 9 of the old directory may write no more", func() error { return s.Apply(c, "r", at(9), set("nine-late")) }, rooms.ErrFenced},
		{"claim 12 of the old directory may not fence", func() error { return s.Fence(c, "r", at(12)) }, rooms.ErrFenced},
		{"an unknown room is not fenced", func() error { return s.Fence(c, "nope", at(1)) }, rooms.ErrRoomNotFound},
		{"an unknown room takes no writes", func() error { return s.Apply(c, "nope", at(1), set("x")) }, rooms.ErrRoomNotFound},
	}
	for _, st := range steps {
		if err := st.call(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Errorf("%s: got %v, want %v", st.name, err, st.want)
		}
	}
	got, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for id := range got {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if want := []string{"anew", "five", "free", "nine"}; !slices.Equal(ids, want) {
		t.Errorf("entities %v, want %v: a refused batch wrote", ids, want)
	}
}

func testFenceRacesWrites(t *testing.T, s rooms.Store) {
	c := ctx(t)
	if _, err := s.CreateRoom(c, info("r", time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Fence(c, "r", at(1)); err != nil {
		t.Fatal(err)
	}
	// Writers of claim 1 write one entity each while claim 2 fences. Every
	// write acknowledged must be in the store, and none that began after
	// the fence returned may be acknowledged.
	const writers = 8
	var fencedAt atomic.Int64 // UnixNano when Fence returned
	var mu sync.Mutex
	var acked []string
	var lateAcks []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := 0; ; i++ {
				began := time.Now().UnixNano()
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Apply(c, "r", at(1), []rooms.Change{{Entity: id, Set: rooms.Components{"n": float64(i)}}})
				if errors.Is(err, rooms.ErrFenced) {
					return
				}
				if err != nil {
					t.Errorf("write of claim 1: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				if f := fencedAt.Load(); f != 0 && began > f {
					lateAcks = append(lateAcks, id)
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	if err := s.Fence(c, "r", at(2)); err != nil {
		t.Fatal(err)
	}
	fencedAt.Store(time.Now().UnixNano())
	wg.Wait()
	if len(lateAcks) > 0 {
		t.Errorf("writes begun after the fence were acknowledged: %v", lateAcks)
	}
	got, err := s.Entities(c, "r")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if _, ok := got[id]; !ok {
			t.Errorf("acknowledged write %s is not in the store", id)
		}
	}
	if len(acked) == 0 {
		t.Error("no write of claim 1 was acknowledged before the fence")
	}
}
