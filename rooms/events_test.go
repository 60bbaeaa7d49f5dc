package rooms_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

func TestPublishRelaysToEveryoneButTheSender(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice, bob, carol := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
		ma := w.join("lobby", "alice", alice)
		w.join("lobby", "bob", bob)
		w.join("lobby", "carol", carol)
		w.ticks(1)
		for _, m := range []*fakeMember{alice, bob, carol} {
			m.clear()
		}

		data := map[string]any{"door": "d7", "angle": 1.5, "tags": []any{"a", -3}}
		if err := ma.Publish("door_opened", data); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*fakeMember{bob, carol} {
			events := only[*codec.Event](m.takeFrames())
			if len(events) != 1 {
				t.Fatalf("%s got %d events, want 1", m.name, len(events))
			}
			e := events[0]
			if e.Name != "door_opened" || e.User != "alice" || e.At != time.Now().UnixMilli() || asJSON(t, e.Data) != asJSON(t, data) {
				t.Errorf("%s got %v, want door_opened by alice with %v", m.name, asJSON(t, e), asJSON(t, data))
			}
		}
		if got := alice.takeFrames(); len(got) != 0 {
			t.Errorf("the sender got its own event back: %v", asJSON(t, got))
		}
		if err := ma.Publish("wave", nil); err != nil {
			t.Errorf("an event without data: %v", err)
		}
		if e := only[*codec.Event](bob.takeFrames()); len(e) != 1 || e[0].Name != "wave" || e[0].Data != nil {
			t.Errorf("bob got %v, want a wave without data", asJSON(t, e))
		}
	})
}

func TestPublishRefusesReservedAndBadEvents(t *testing.T) {
	tests := []struct {
		name  string
		event string
		data  any
	}{
		{"user_joined is the room's", codec.EventUserJoined, nil},
		{"user_left is the room's", codec.EventUserLeft, nil},
		{"user_stale is the room's", codec.EventUserStale, nil},
		{"user_recovered is the room's", codec.EventUserRecovered, nil},
		{"user_moved is the room's", rooms.EventUserMoved, nil},
		{"entity_created is the room's", rooms.EventEntityCreated, nil},
		{"entity_updated is the room's", rooms.EventEntityUpdated, nil},
		{"entity_deleted is the room's", rooms.EventEntityDeleted, nil},
		{"an empty name is invalid", "", nil},
		{"an upper-case name is invalid", "Door_opened", nil},
		{"a name with a space is invalid", "door opened", nil},
		{"a name with a dash is invalid", "door-opened", nil},
		{"a name starting with a digit is invalid", "9lives", nil},
		{"a name over 64 bytes is invalid", strings.Repeat("x", rooms.MaxEventName+1), nil},
		{"data with NaN is invalid", "door_opened", map[string]any{"angle": math.NaN()}},
		{"data with a string that is not UTF-8 is invalid", "door_opened", []any{"\xff"}},
		{"data of a Go type JSON values are not decoded as is invalid", "door_opened", struct{}{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				bob := newMember(t, "bob")
				w.join("lobby", "bob", bob)
				ma := w.join("lobby", "alice", newMember(t, "alice"))
				var seen []string
				cancel := w.reg.Room("lobby").Subscribe(func(ev rooms.Event) { seen = append(seen, ev.Name) })
				defer cancel()
				w.ticks(1)
				bob.clear()

				if err := ma.Publish(tt.event, tt.data); !errors.Is(err, rooms.ErrInvalid) {
					t.Errorf("Publish = %v, want ErrInvalid", err)
				}
				if got := bob.takeFrames(); len(got) != 0 {
					t.Errorf("a refused event reached bob: %v", asJSON(t, got))
				}
				if len(seen) != 0 {
					t.Errorf("a refused event reached a listener: %v", seen)
				}
			})
		})
	}
}

// recorder is a room listener that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []rooms.Event
}

func (r *recorder) listen(ev rooms.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// story renders the events as one line each.
func (r *recorder) story(t *testing.T, names map[string]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		line := fmt.Sprintf("%s user=%s", ev.Name, ev.User)
		if ev.Entity != "" {
			line += " entity=" + names[ev.Entity]
		}
		if ev.Avatar {
			line += " avatar"
		}
		if ev.Data != nil {
			line += " " + asJSON(t, ev.Data)
		}
		if ev.Room != "lobby" || ev.At.IsZero() {
			line += fmt.Sprintf(" room=%s at=%v", ev.Room, ev.At)
		}
		out = append(out, line)
	}
	return out
}

func TestAListenerSeesTheRoomsStoryInOrder(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		room := w.reg.Room("lobby")
		var rec, other recorder
		cancel := room.Subscribe(rec.listen)
		cancelOther := room.Subscribe(other.listen)

		mb := w.join("lobby", "bob", newMember(t, "bob"))
		w.ticks(1)
		lamp := create(t, ma, rooms.Components{"lamp": map[string]any{"on": false}, "color": "red"})
		w.ticks(1)
		must(t, ma.UpdateEntity(lamp, rooms.Components{"lamp": map[string]any{"on": true}, "color": nil}, nil))
		must(t, mb.Publish("user_grabbed", map[string]any{"entity": lamp}))
		must(t, ma.DeleteEntity(lamp, nil))
		mb.Leave()
		cancelOther()
		w.ticks(1)

		names := map[string]string{"bob": "bob", "alice": "alice", lamp: "lamp"}
		want := []string{
			`entity_created user=bob entity=bob avatar {"avatar":true,"name":"name of bob","slot":1,"user":"bob"}`,
			`user_joined user=bob {"name":"name of bob","slot":1}`,
			`entity_created user=alice entity=lamp {"color":"red","lamp":{"on":false}}`,
			`entity_updated user=alice entity=lamp {"color":null,"lamp":{"on":true}}`,
			`user_grabbed user=bob {"entity":"` + lamp + `"}`,
			`entity_deleted user=alice entity=lamp`,
			`entity_deleted user=bob entity=bob avatar`,
			`user_left user=bob`,
		}
		if got := rec.story(t, names); !slices.Equal(got, want) {
			t.Errorf("listener saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := other.story(t, names); !slices.Equal(got, want) {
			t.Errorf("second listener saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// Cancelled listeners hear no more; cancelling again is harmless.
		cancel()
		cancel()
		cancelOther()
		w.join("lobby", "carol", newMember(t, "carol"))
		must(t, ma.Publish("wave", nil))
		w.ticks(1)
		if got := rec.story(t, names); len(got) != len(want) {
			t.Errorf("a cancelled listener heard %v", got[len(want):])
		}
	})
}
