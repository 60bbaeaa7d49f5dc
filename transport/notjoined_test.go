package transport

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// roomSnapshot is what a room looks like to an honest member and to the
// store at one moment.
type roomSnapshot struct {
	entities map[string]codec.Components // the honest member's view
	presence []string                    // users present, sorted
	events   int                         // events the honest member received
	stored   map[string]codec.Components // the store's environment entities
}

func snapshotRoom(t *testing.T, ts *testServer, honest *client.Client, room string) roomSnapshot {
	t.Helper()
	v := honest.View()
	stored, err := ts.store.Entities(testContext(t), room)
	if err != nil {
		t.Fatal(err)
	}
	// The view's components are changed in place by later diffs: copy them.
	entities := make(map[string]codec.Components, len(v.Entities))
	for id, c := range v.Entities {
		entities[id] = cloneValue(c).(codec.Components)
	}
	return roomSnapshot{
		entities: entities,
		presence: slices.Sorted(maps.Keys(v.Presence)),
		events:   len(v.Events),
		stored:   stored,
	}
}

// cloneValue deep-copies a decoded component value.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = cloneValue(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = cloneValue(e)
		}
		return s
	}
	return v
}

// entityChanges lists the entities added, removed or changed from before to
// after, or returns nil when there are none.
func entityChanges(before, after map[string]codec.Components) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(after)) {
		switch b, ok := before[id]; {
		case !ok:
			out = append(out, "added "+id)
		case !reflect.DeepEqual(b, after[id]):
			out = append(out, "changed "+id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[id]; !ok {
			out = append(out, "removed "+id)
		}
	}
	return out
}

// settle has the herald, an honest member, create an entity and publish an
// event in the open, and waits until the honest member has seen both and
// the store holds the entity. The room relays events at once and sends
// entity changes in tick order, and the store writes them in order: once
// the marker is seen, whatever the room did before it has been seen too.
// It returns the marker entity's id.
func settle(t *testing.T, ts *testServer, herald, honest *client.Client, room string, eventsBefore int) string {
	t.Helper()
	ctx := testContext(t)
	marker, err := herald.CreateEntity(ctx, codec.Components{"marker": true})
	if err != nil {
		t.Fatalf("the herald's marker entity: %v", err)
	}
	if err := herald.Publish(ctx, "marker", nil); err != nil {
		t.Fatalf("the herald's marker event: %v", err)
	}
	waitFor(t, honest, "the herald's marker", func(v *client.View) bool {
		return v.Entities[marker] != nil && len(v.Events) > eventsBefore && v.Events[len(v.Events)-1].Name == "marker"
	})
	waitUntil(t, "the marker in the store", func() bool {
		stored, err := ts.store.Entities(ctx, room)
		return err == nil && stored[marker] != nil
	})
	return marker
}

func TestOperationsOutsideARoomAreRefusedAsNotJoined(t *testing.T) {
	ts := startServer(t, func(c *Config, r *rooms.Config) {
		// The herald makes two room operations per case.
		c.MessageRate, c.EventRate = 1000, 1000
		// No user_stale events while members stand still.
		r.StaleAfter = time.Hour
	})
	const room = "lobby"
	honest, _ := join(t, ts, room, "honest")
	herald, _ := join(t, ts, room, "herald")
	waitFor(t, honest, "the herald present", func(v *client.View) bool { return v.Presence["herald"] != nil })

	// The room's generated content: a spawn point and obstacles.
	var spawn, obstacle string
	for id, c := range honest.View().Entities {
		switch {
		case c[rooms.ComponentSpawnPoint] != nil:
			spawn = id
		case c[rooms.ComponentObstacle] != nil:
			obstacle = id
		}
	}
	if spawn == "" || obstacle == "" {
		t.Fatalf("no spawn point or obstacle in %v", honest.View().Entities)
	}

	outsiders := []struct {
		name string
		// open returns a session that is in no room, with its user name,
		// empty for one that never joined.
		open func(t *testing.T, n int) (*client.Client, string)
	}{
		{"a session that never joined", func(t *testing.T, _ int) (*client.Client, string) {
			return dial(t, ts), ""
		}},
		{"a session that left the room", func(t *testing.T, n int) (*client.Client, string) {
			user := "leaver" + string(rune('a'+n))
			c, _ := join(t, ts, room, user)
			waitFor(t, honest, "the leaver's avatar", func(v *client.View) bool { return v.Entities[user] != nil })
			if err := c.Leave(testContext(t)); err != nil {
				t.Fatalf("leave: %v", err)
			}
			waitFor(t, honest, "the leaver gone", func(v *client.View) bool {
				return v.Entities[user] == nil && v.Presence[user] == nil
			})
			return c, user
		}},
	}
	operations := []struct {
		name   string
		msg    func() codec.Message
		target string // the entity it aims at, if any
	}{
		{"an application event is not relayed", func() codec.Message {
			return &codec.Event{Name: "door_opened", Data: map[string]any{"door": 1}}
		}, ""},
		{"a create adds no entity", func() codec.Message {
			return &codec.Create{Components: codec.Components{"crate": true, "position": []any{1.0, 0.5, 1.0}}}
		}, ""},
		{"an update leaves the spawn point where it is", func() codec.Message {
			return &codec.Update{Entity: spawn, Components: codec.Components{"position": []any{50.0, 50.0, 50.0}, "hacked": true}}
		}, spawn},
		{"a delete leaves the obstacle standing", func() codec.Message {
			return &codec.Delete{Entity: obstacle}
		}, obstacle},
		{"a resync sends no room state", func() codec.Message {
			return &codec.Resync{}
		}, ""},
	}

	n := 0
	for _, o := range outsiders {
		t.Run(o.name, func(t *testing.T) {
			for _, op := range operations {
				t.Run(op.name, func(t *testing.T) {
					outsider, user := o.open(t, n)
					n++
					before := snapshotRoom(t, ts, honest, room)
					outsiderEvents := len(outsider.View().Events)
					notJoined := ts.rejected(rejectNotJoined)
					refused := ts.rejected(rejectRequest)

					// A refusal comes back at once; a resync that went through
					// would have no answer at all.
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					reply, err := outsider.Request(ctx, op.msg())
					var re *client.RequestError
					if !errors.As(err, &re) || re.Code != codec.CodeNotJoined {
						// Go on: what the operation did to the room matters more.
						t.Errorf("answer %#v, %v; want error %s", reply, err, codec.CodeNotJoined)
					}
					if got := ts.rejected(rejectNotJoined) - notJoined; got != 1 {
						t.Errorf("%v refusals counted as %s, want 1", got, rejectNotJoined)
					}
					if got := ts.rejected(rejectRequest) - refused; got != 0 {
						t.Errorf("%v refusals counted as %s, want 0", got, rejectRequest)
					}

					marker := settle(t, ts, herald, honest, room, before.events)
					after := snapshotRoom(t, ts, honest, room)
					if got := after.events - before.events; got != 1 {
						t.Errorf("the honest member received %d events, want only the marker: %+v", got, honest.View().Events[before.events:])
					}
					delete(after.entities, marker)
					delete(after.stored, marker)
					if op.target != "" && !reflect.DeepEqual(after.entities[op.target], before.entities[op.target]) {
						t.Errorf("the honest member's view of %s is %v, was %v", op.target, after.entities[op.target], before.entities[op.target])
					}
					if d := entityChanges(before.entities, after.entities); d != nil {
						t.Errorf("the honest member's entities changed: %v", d)
					}
					if d := entityChanges(before.stored, after.stored); d != nil {
						t.Errorf("the store's entities changed: %v", d)
					}
					if !slices.Equal(after.presence, before.presence) {
						t.Errorf("presence is %v, was %v", after.presence, before.presence)
					}

					// The outsider learned nothing of the room and may go on.
					v := outsider.View()
					if v.Entities != nil || v.Presence != nil || len(v.Events) != outsiderEvents {
						t.Errorf("the outsider %q holds room state: %d entities, presence %v, events %v", user, len(v.Entities), slices.Sorted(maps.Keys(v.Presence)), v.Events[outsiderEvents:])
					}
					if _, err := outsider.Request(testContext(t), &codec.Ping{}); err != nil {
						t.Errorf("the outsider's session after the refusal: %v", err)
					}
				})
			}
		})
	}
}
