package rooms_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/rooms"
)

// batchStore is a MemoryStore that records the size of every batch it is
// given.
type batchStore struct {
	rooms.MemoryStore

	mu    sync.Mutex // guards the following
	sizes []int
}

func (s *batchStore) Apply(ctx context.Context, room string, claim rooms.Claim, changes []rooms.Change) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(changes))
	s.mu.Unlock()
	return s.MemoryStore.Apply(ctx, room, claim, changes)
}

func (s *batchStore) batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sizes)
}

func TestChangesFasterThanTheSyncIntervalGoInOneBatch(t *testing.T) {
	store := &batchStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		a := create(t, ma, rooms.Components{"n": 0})
		synctest.Wait()
		if got := store.batches(); !slices.Equal(got, []int{1}) {
			t.Fatalf("a change after a quiet spell went in batches %v, want [1] at once", got)
		}

		for n := range 10 {
			must(t, ma.UpdateEntity(a, rooms.Components{"n": n}, nil))
		}
		synctest.Wait()
		if got := store.batches(); !slices.Equal(got, []int{1}) {
			t.Errorf("changes right after a write were written before the interval: %v", got)
		}
		if got := w.reg.PendingChanges(); got != 10 {
			t.Errorf("%d changes pending, want 10", got)
		}
		w.ticks(1)
		if got := store.batches(); !slices.Equal(got, []int{1, 10}) {
			t.Fatalf("after the interval the batches are %v, want [1 10]", got)
		}

		for n := range 600 {
			must(t, ma.UpdateEntity(a, rooms.Components{"n": n}, nil))
		}
		synctest.Wait()
		if got := store.batches(); !slices.Equal(got, []int{1, 10, 500}) {
			t.Errorf("a full batch did not go at once: %v", got)
		}
		w.ticks(1)
		if got := store.batches(); !slices.Equal(got, []int{1, 10, 500, 100}) {
			t.Errorf("batches %v, want [1 10 500 100]", got)
		}
		if got := w.reg.PendingChanges(); got != 0 {
			t.Errorf("%d changes pending, want none", got)
		}
		if got := asJSON(t, w.entities("lobby")[a]); got != `{"n":599}` {
			t.Errorf("the store holds %s", got)
		}
	})
}

func TestDeleteRoomRefusesRoomsWithPeopleIn(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ctx := context.Background()
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		if err := w.reg.DeleteRoom(ctx, "lobby"); !errors.Is(err, rooms.ErrRoomBusy) || !strings.Contains(err.Error(), "1 users") {
			t.Errorf("delete with alice in = %v, want ErrRoomBusy", err)
		}
		ma.Disconnect(time.Now()) // held, within her reconnect grace: still present
		if err := w.reg.DeleteRoom(ctx, "lobby"); !errors.Is(err, rooms.ErrRoomBusy) {
			t.Errorf("delete with alice held = %v, want ErrRoomBusy", err)
		}
		if w.reg.Room("lobby") == nil {
			t.Error("a refused delete stopped the room")
		}
		w.ticks(30) // her grace ends and she leaves
		if err := w.reg.DeleteRoom(ctx, "lobby"); err != nil {
			t.Errorf("delete of the emptied room: %v", err)
		}
		if w.reg.Room("lobby") != nil {
			t.Error("the deleted room is still live")
		}
		tests := []struct {
			name string
			id   string
			want error
		}{
			{"a deleted room is not found", "lobby", rooms.ErrRoomNotFound},
			{"a room never made is not found", "nowhere", rooms.ErrRoomNotFound},
			{"an id that cannot be a room's is invalid", "no way", rooms.ErrInvalid},
		}
		for _, tt := range tests {
			if err := w.reg.DeleteRoom(ctx, tt.id); !errors.Is(err, tt.want) {
				t.Errorf("%s: DeleteRoom(%q) = %v, want %v", tt.name, tt.id, err, tt.want)
			}
		}
	})
}

// TestDeleteRoomWritesTheLastChangesFirst deletes an empty live room whose
// last change waits for a blocked store, while someone joins the same id:
// the change is written, then the room deleted, then the join makes a new
// room, with none of the old one's entities.
func TestDeleteRoomWritesTheLastChangesFirst(t *testing.T) {
	store := &gatedStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		ctx := context.Background()
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		w.ticks(5)
		store.block()
		door := create(t, ma, rooms.Components{"door": true})
		synctest.Wait() // the store is writing the door, and stuck
		ma.Leave()

		var deleted error
		var rejoined *rooms.Membership
		var wg sync.WaitGroup
		wg.Go(func() { deleted = w.reg.DeleteRoom(ctx, "lobby") })
		synctest.Wait()
		wg.Go(func() {
			var err error
			if rejoined, err = w.reg.Join(ctx, "lobby", newMember(t, "bob"), rooms.JoinRequest{User: "bob"}); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		if rejoined != nil {
			t.Error("a join went through while the room was being deleted")
		}
		store.release()
		wg.Wait()
		if deleted != nil {
			t.Errorf("delete: %v", deleted)
		}
		if got := store.applied(); !slices.Equal(got, []string{door}) {
			t.Errorf("the store applied %v, want the door", got)
		}
		if rejoined == nil {
			t.Fatal("the join after the delete failed")
		}
		if _, ok := w.entities("lobby")[door]; ok {
			t.Error("the new room has the old room's door")
		}
		view, err := w.reg.DescribeRoom(ctx, "lobby")
		if err != nil || !view.Live || view.Present != 1 || view.Entities[door] != nil {
			t.Errorf("the new room is %+v, %v", view, err)
		}
	})
}
