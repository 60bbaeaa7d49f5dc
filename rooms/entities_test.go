package rooms_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

func TestEntityChangesMakeOneDiffPerTick(t *testing.T) {
	tests := []struct {
		name string
		// do changes the world; old is an entity created in an earlier tick.
		do          func(t *testing.T, m *rooms.Membership, old string) (created string)
		wantCreates string // JSON, with "NEW" for the created entity's id
		wantUpdates string
		wantDeletes []string // "OLD" or "NEW"
		wantStored  string   // the old entity, then the new one, in the store
	}{
		{
			name: "a create then an update is one create with the merged components",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				id := create(t, m, rooms.Components{"a": 1, "b": 2})
				must(t, m.UpdateEntity(id, rooms.Components{"b": 3, "c": 4, "a": nil}, nil))
				return id
			},
			wantCreates: `{"NEW":{"b":3,"c":4}}`, wantUpdates: `{}`,
			wantStored: `[{"x":1},{"b":3,"c":4}]`,
		},
		{
			name: "a create then a delete is only a delete",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				id := create(t, m, rooms.Components{"a": 1})
				must(t, m.DeleteEntity(id, nil))
				return id
			},
			wantCreates: `{}`, wantUpdates: `{}`, wantDeletes: []string{"NEW"},
			wantStored: `[{"x":1},null]`,
		},
		{
			name: "two updates merge into one",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				must(t, m.UpdateEntity(old, rooms.Components{"y": 2}, nil))
				must(t, m.UpdateEntity(old, rooms.Components{"x": 5, "z": []any{1, "two"}}, nil))
				return ""
			},
			wantCreates: `{}`, wantUpdates: `{"OLD":{"x":5,"y":2,"z":[1,"two"]}}`,
			wantStored: `[{"x":5,"y":2,"z":[1,"two"]},null]`,
		},
		{
			name: "a removed component is a nil in the update",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				must(t, m.UpdateEntity(old, rooms.Components{"y": true}, nil))
				must(t, m.UpdateEntity(old, rooms.Components{"x": nil}, nil))
				return ""
			},
			wantCreates: `{}`, wantUpdates: `{"OLD":{"x":null,"y":true}}`,
			wantStored: `[{"y":true},null]`,
		},
		{
			name: "an update then a delete is only a delete",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				must(t, m.UpdateEntity(old, rooms.Components{"y": 2}, nil))
				must(t, m.DeleteEntity(old, nil))
				return ""
			},
			wantCreates: `{}`, wantUpdates: `{}`, wantDeletes: []string{"OLD"},
			wantStored: `[null,null]`,
		},
		{
			name: "an update that removes every component is a delete",
			do: func(t *testing.T, m *rooms.Membership, old string) string {
				must(t, m.UpdateEntity(old, rooms.Components{"x": nil}, nil))
				return ""
			},
			wantCreates: `{}`, wantUpdates: `{}`, wantDeletes: []string{"OLD"},
			wantStored: `[null,null]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				alice, bob := newMember(t, "alice"), newMember(t, "bob")
				ma := w.join("lobby", "alice", alice)
				w.join("lobby", "bob", bob)
				old := create(t, ma, rooms.Components{"x": 1})
				w.ticks(1)
				alice.clear()
				bob.clear()

				created := tt.do(t, ma, old)
				w.ticks(1)
				for _, m := range []*fakeMember{alice, bob} {
					diffs := only[*codec.EntitiesDiff](m.takeFrames())
					if len(diffs) != 1 {
						t.Fatalf("%s got %d entities diffs, want 1", m.name, len(diffs))
					}
					d := diffs[0]
					rename := map[string]string{old: "OLD", created: "NEW"}
					creates, updates := map[string]rooms.Components{}, map[string]rooms.Components{}
					for id, c := range d.Creates {
						creates[rename[id]] = c
					}
					for id, c := range d.Updates {
						updates[rename[id]] = c
					}
					var deletes []string
					for _, id := range d.Deletes {
						deletes = append(deletes, rename[id])
					}
					if got := asJSON(t, creates); got != tt.wantCreates {
						t.Errorf("%s: creates %s, want %s", m.name, got, tt.wantCreates)
					}
					if got := asJSON(t, updates); got != tt.wantUpdates {
						t.Errorf("%s: updates %s, want %s", m.name, got, tt.wantUpdates)
					}
					if !slices.Equal(deletes, tt.wantDeletes) {
						t.Errorf("%s: deletes %v, want %v", m.name, deletes, tt.wantDeletes)
					}
				}
				stored := w.entities("lobby")
				if got := asJSON(t, []any{stored[old], stored[created]}); got != tt.wantStored {
					t.Errorf("store holds %s, want %s", got, tt.wantStored)
				}
				w.ticks(1)
				if d := only[*codec.EntitiesDiff](bob.takeFrames()); len(d) != 0 {
					t.Errorf("a quiet tick sent %v", asJSON(t, d))
				}
			})
		})
	}
}

func create(t *testing.T, m *rooms.Membership, c rooms.Components) string {
	t.Helper()
	id, err := m.CreateEntity(c, nil)
	if err != nil {
		t.Fatalf("CreateEntity(%v): %v", c, err)
	}
	if !rooms.ValidID(id) {
		t.Fatalf("CreateEntity made id %q", id)
	}
	return id
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestEntityChangesThatAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		do      func(m *rooms.Membership, env string) error
		wantErr error
	}{
		{"a member cannot update its own avatar", func(m *rooms.Membership, _ string) error {
			return m.UpdateEntity("alice", rooms.Components{"name": "Eve"}, nil)
		}, rooms.ErrForbidden},
		{"a member cannot update another's avatar", func(m *rooms.Membership, _ string) error {
			return m.UpdateEntity("bob", rooms.Components{"x": 1}, nil)
		}, rooms.ErrForbidden},
		{"a member cannot delete an avatar", func(m *rooms.Membership, _ string) error {
			return m.DeleteEntity("bob", nil)
		}, rooms.ErrForbidden},
		{"a member cannot create an avatar", func(m *rooms.Membership, _ string) error {
			_, err := m.CreateEntity(rooms.Components{rooms.ComponentAvatar: true}, nil)
			return err
		}, rooms.ErrForbidden},
		{"a member cannot set the avatar component on an entity", func(m *rooms.Membership, env string) error {
			return m.UpdateEntity(env, rooms.Components{rooms.ComponentAvatar: true}, nil)
		}, rooms.ErrForbidden},
		{"updating an unknown entity is not found", func(m *rooms.Membership, _ string) error {
			return m.UpdateEntity("e-nope", rooms.Components{"x": 1}, nil)
		}, rooms.ErrNotFound},
		{"deleting an unknown entity is not found", func(m *rooms.Membership, _ string) error {
			return m.DeleteEntity("e-nope", nil)
		}, rooms.ErrNotFound},
		{"the avatar of a user who left is not found", func(m *rooms.Membership, _ string) error {
			return m.UpdateEntity("carol", rooms.Components{"x": 1}, nil)
		}, rooms.ErrNotFound},
		{"an entity without components is invalid", func(m *rooms.Membership, _ string) error {
			_, err := m.CreateEntity(rooms.Components{}, nil)
			return err
		}, rooms.ErrInvalid},
		{"a nil component in a create is invalid", func(m *rooms.Membership, _ string) error {
			_, err := m.CreateEntity(rooms.Components{"x": nil}, nil)
			return err
		}, rooms.ErrInvalid},
		{"an upper-case component name is invalid", func(m *rooms.Membership, _ string) error {
			_, err := m.CreateEntity(rooms.Components{"Color": "red"}, nil)
			return err
		}, rooms.ErrInvalid},
		{"a component JSON cannot hold is invalid", func(m *rooms.Membership, env string) error {
			return m.UpdateEntity(env, rooms.Components{"x": math.NaN()}, nil)
		}, rooms.ErrInvalid},
		{"an update without components is invalid", func(m *rooms.Membership, env string) error {
			return m.UpdateEntity(env, nil, nil)
		}, rooms.ErrInvalid},
		{"a change after leaving is refused", func(m *rooms.Membership, env string) error {
			m.Leave()
			return m.DeleteEntity(env, nil)
		}, rooms.ErrLeft},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				alice, bob := newMember(t, "alice"), newMember(t, "bob")
				ma := w.join("lobby", "alice", alice)
				w.join("lobby", "bob", bob)
				w.join("lobby", "carol", newMember(t, "carol")).Leave()
				env := create(t, ma, rooms.Components{"x": 1})
				w.ticks(1)
				before := w.entities("lobby")
				bob.clear()

				if err := tt.do(ma, env); !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
				w.ticks(1)
				for _, d := range only[*codec.EntitiesDiff](bob.takeFrames()) {
					if len(d.Creates)+len(d.Updates) != 0 || slices.ContainsFunc(d.Deletes, func(id string) bool { return id != "alice" }) {
						t.Errorf("a refused change made %v", asJSON(t, d))
					}
				}
				if after := w.entities("lobby"); asJSON(t, after) != asJSON(t, before) {
					t.Errorf("a refused change reached the store: %v", asJSON(t, after))
				}
			})
		})
	}
}

func TestAnEntityAtTheComponentLimitCanBeUpdated(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		full := rooms.Components{}
		for i := range rooms.MaxComponents {
			full[fmt.Sprintf("c%d", i)] = i
		}
		id := create(t, ma, full)
		if err := ma.UpdateEntity(id, rooms.Components{"c0": "changed"}, nil); err != nil {
			t.Errorf("changing a component of a full entity: %v", err)
		}
		if err := ma.UpdateEntity(id, rooms.Components{"c1": nil, "extra": true}, nil); err != nil {
			t.Errorf("swapping a component of a full entity: %v", err)
		}
		if err := ma.UpdateEntity(id, rooms.Components{"one_more": true}, nil); !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("adding a component to a full entity: %v, want ErrInvalid", err)
		}
		w.ticks(1)
		got := w.entities("lobby")[id]
		if len(got) != rooms.MaxComponents || got["c0"] != "changed" || got["extra"] != true {
			t.Errorf("store holds %d components, c0 %v, extra %v", len(got), got["c0"], got["extra"])
		}
	})
}

func TestTheStoreGetsWhatWasAskedEvenIfTheCallerReusesItsMap(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		c := rooms.Components{"n": 1, "tags": []any{"a"}}
		id1 := create(t, ma, c)
		c["n"] = 2
		c["tags"].([]any)[0] = "b"
		id2 := create(t, ma, c)
		u := rooms.Components{"more": map[string]any{"k": "v"}}
		must(t, ma.UpdateEntity(id1, u, nil))
		u["more"].(map[string]any)["k"] = "changed"
		w.ticks(1)
		got := w.entities("lobby")
		if s := asJSON(t, got[id1]); s != `{"more":{"k":"v"},"n":1,"tags":["a"]}` {
			t.Errorf("first entity stored as %s", s)
		}
		if s := asJSON(t, got[id2]); s != `{"n":2,"tags":["b"]}` {
			t.Errorf("second entity stored as %s", s)
		}
	})
}

func TestChangesReachTheStoreInOrder(t *testing.T) {
	store := &gatedStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		a := create(t, ma, rooms.Components{"n": 1})
		must(t, ma.UpdateEntity(a, rooms.Components{"n": 2}, nil))
		b := create(t, ma, rooms.Components{"n": 10})
		w.ticks(1)
		must(t, ma.UpdateEntity(a, rooms.Components{"n": 3}, nil))
		must(t, ma.DeleteEntity(b, nil))
		c := create(t, ma, rooms.Components{"n": 20})
		must(t, ma.UpdateEntity(c, rooms.Components{"n": nil, "m": 21}, nil))
		w.ticks(1)
		if got, want := store.applied(), []string{a, a, b, a, b, c, c}; !slices.Equal(got, want) {
			t.Errorf("store applied changes to %v, want %v", got, want)
		}
		got := w.entities("lobby")
		if asJSON(t, got[a]) != `{"n":3}` || got[b] != nil || asJSON(t, got[c]) != `{"m":21}` {
			t.Errorf("store holds %v", asJSON(t, []any{got[a], got[b], got[c]}))
		}
		if s := w.reg.Room("lobby").Stats(); s.PendingChanges != 0 {
			t.Errorf("%d changes pending", s.PendingChanges)
		}
	})
}

func TestABlockedStoreQueuesChangesUpToALimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPendingChanges = 3
	store := &gatedStore{}
	inBubble(t, cfg, store, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		w.join("lobby", "bob", bob)
		w.ticks(1)
		bob.clear()

		store.block()
		a := create(t, ma, rooms.Components{"n": 1})
		synctest.Wait() // the store is writing a, and stuck
		b := create(t, ma, rooms.Components{"n": 2})
		must(t, ma.UpdateEntity(a, rooms.Components{"n": 3}, nil))
		if s := w.reg.Room("lobby").Stats(); s.PendingChanges != 3 {
			t.Errorf("%d changes pending, want 3", s.PendingChanges)
		}
		if _, err := ma.CreateEntity(rooms.Components{"n": 4}, nil); !errors.Is(err, rooms.ErrStoreBacklog) {
			t.Errorf("create past the limit = %v, want ErrStoreBacklog", err)
		}
		if err := ma.UpdateEntity(b, rooms.Components{"n": 5}, nil); !errors.Is(err, rooms.ErrStoreBacklog) {
			t.Errorf("update past the limit = %v, want ErrStoreBacklog", err)
		}
		if err := ma.DeleteEntity(b, nil); !errors.Is(err, rooms.ErrStoreBacklog) {
			t.Errorf("delete past the limit = %v, want ErrStoreBacklog", err)
		}

		// The room goes on: the accepted changes reach the members, the
		// refused ones do not.
		w.ticks(3)
		diffs := only[*codec.EntitiesDiff](bob.takeFrames())
		if len(diffs) != 1 || asJSON(t, diffs[0].Creates[a]) != `{"n":3}` || asJSON(t, diffs[0].Creates[b]) != `{"n":2}` || len(diffs[0].Creates) != 2 {
			t.Errorf("bob got %v, want the creates of a and b", asJSON(t, diffs))
		}
		if got := store.applied(); len(got) != 0 {
			t.Errorf("a blocked store applied %v", got)
		}

		store.release()
		synctest.Wait()
		if got, want := store.applied(), []string{a, b, a}; !slices.Equal(got, want) {
			t.Errorf("store applied changes to %v, want %v", got, want)
		}
		stored := w.entities("lobby")
		if asJSON(t, stored[a]) != `{"n":3}` || asJSON(t, stored[b]) != `{"n":2}` {
			t.Errorf("store holds %v", asJSON(t, []any{stored[a], stored[b]}))
		}
		if _, err := ma.CreateEntity(rooms.Components{"n": 6}, nil); err != nil {
			t.Errorf("create once the store caught up: %v", err)
		}
	})
}

func TestAStoreOutageQueuesChangesUntilTheStoreReturns(t *testing.T) {
	store := &gatedStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		w.join("lobby", "bob", bob)
		w.ticks(1)
		bob.clear()

		store.setDown(true)
		a := create(t, ma, rooms.Components{"n": 1})
		b := create(t, ma, rooms.Components{"n": 2})
		w.ticks(1)
		must(t, ma.UpdateEntity(a, rooms.Components{"n": 3}, nil))
		must(t, ma.DeleteEntity(b, nil))
		w.ticks(50) // ten seconds of retries
		if n := store.attempts(); n < 3 {
			t.Errorf("the store was tried %d times in ten seconds", n)
		}
		if s := w.reg.Room("lobby").Stats(); s.PendingChanges != 4 {
			t.Errorf("%d changes pending, want 4", s.PendingChanges)
		}
		if d := only[*codec.EntitiesDiff](bob.takeFrames()); len(d) != 2 {
			t.Errorf("bob got %d entities diffs during the outage, want 2", len(d))
		}

		store.setDown(false)
		w.ticks(50) // past the longest backoff
		if got, want := store.applied(), []string{a, b, a, b}; !slices.Equal(got, want) {
			t.Errorf("store applied changes to %v, want %v", got, want)
		}
		stored := w.entities("lobby")
		if asJSON(t, stored[a]) != `{"n":3}` || stored[b] != nil {
			t.Errorf("store holds %v", asJSON(t, []any{stored[a], stored[b]}))
		}
		if s := w.reg.Room("lobby").Stats(); s.PendingChanges != 0 {
			t.Errorf("%d changes pending after the outage", s.PendingChanges)
		}
	})
}

func TestCloseDuringAStoreOutageWritesOnceTheStoreAnswers(t *testing.T) {
	for i := range 8 { // the syncer may see the stop or its wake first
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			store := &gatedStore{}
			inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
				ma := w.join("lobby", "alice", newMember(t, "alice"))
				store.setDown(true)
				a := create(t, ma, rooms.Components{"n": 1})
				w.ticks(1) // the syncer tried, failed and waits to retry
				store.setDown(false)
				w.reg.Close()
				if got := store.applied(); !slices.Equal(got, []string{a}) {
					t.Errorf("store applied %v, want %v", got, []string{a})
				}
			})
		})
	}
}

func TestAChangeIsToldWhenItIsStored(t *testing.T) {
	store := &gatedStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		m := w.join("lobby", "ada", newMember(t, "ada"))
		var mu sync.Mutex
		var outcomes []string
		told := func(what string) func(error) {
			return func(err error) {
				mu.Lock()
				outcomes = append(outcomes, fmt.Sprintf("%s: %v", what, err))
				mu.Unlock()
			}
		}
		seen := func() string {
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(outcomes, "; ")
		}
		store.block()
		id, err := m.CreateEntity(rooms.Components{"lamp": true}, told("create"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.UpdateEntity(id, rooms.Components{"on": true}, told("update")); err != nil {
			t.Fatal(err)
		}
		w.ticks(3)
		if got := seen(); got != "" {
			t.Fatalf("told %q before the store has the changes", got)
		}
		store.release()
		w.ticks(1)
		if got := seen(); got != "create: <nil>; update: <nil>" {
			t.Errorf("told %q, want both stored", got)
		}
		// A change the store can never hold is told why.
		store.setDown(true)
		if err := m.DeleteEntity(id, told("delete")); err != nil {
			t.Fatal(err)
		}
		w.ticks(5)
		if got := seen(); strings.Contains(got, "delete") {
			t.Fatalf("told %q while the store is down: it may come back", got)
		}
		if err := store.DeleteRoom(context.Background(), "lobby"); err != nil {
			t.Fatal(err)
		}
		store.setDown(false)
		time.Sleep(6 * time.Second) // the syncer's backoff
		synctest.Wait()
		if got := seen(); !strings.Contains(got, "delete: room not found") {
			t.Errorf("told %q, want the delete lost with its room", got)
		}
	})
}

func TestResyncsComeOnceAnIntervalMerged(t *testing.T) {
	tests := []struct {
		users    int
		interval time.Duration
	}{
		{1, time.Second},
		{100, time.Second},
		{250, 2500 * time.Millisecond}, // a state of a big room costs more
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d users", tt.users), func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxMembers = tt.users
			inBubble(t, cfg, nil, func(t *testing.T, w *world) {
				alice := newMember(t, "alice")
				m := w.join("lobby", "alice", alice)
				for i := 1; i < tt.users; i++ {
					w.join("lobby", fmt.Sprintf("u%d", i), newMember(t, fmt.Sprintf("m%d", i)))
				}
				alice.clear()
				states := func() int { return len(only[*codec.EntitiesState](alice.takeFrames())) }
				if err := m.Resync(); err != nil {
					t.Fatal(err)
				}
				if n := states(); n != 1 {
					t.Fatalf("a first resync brought %d states, want 1 at once", n)
				}
				for range 5 {
					if err := m.Resync(); err != nil {
						t.Fatal(err)
					}
				}
				ticks := int(tt.interval / w.cfg.Tick)
				w.ticks(ticks - 1)
				if n := states(); n != 0 {
					t.Fatalf("five resyncs within the interval brought %d states before it ended", n)
				}
				w.ticks(2)
				if n := states(); n != 1 {
					t.Errorf("five resyncs within the interval brought %d states after it, want 1", n)
				}
			})
		})
	}
}
