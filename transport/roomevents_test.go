package transport

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func TestARoomsPresenceOverHTTP(t *testing.T) {
	ts := startServer(t)
	join(t, ts, "plaza", "ada")
	join(t, ts, "plaza", "bob")
	join(t, ts, "elsewhere", "cy")
	var state map[string]codec.PresenceEntry
	waitUntil(t, "ada and bob listed", func() bool {
		status, body := httpGet(t, ts.HTTPURL()+"/api/rooms/plaza/presence")
		state = nil
		return status == http.StatusOK && json.Unmarshal(body, &state) == nil && len(state) == 2
	})
	for _, user := range []string{"ada", "bob"} {
		if metas := state[user].Metas; len(metas) != 1 || metas[0].Ref == "" || !strings.Contains(metas[0].Name, user) {
			t.Errorf("%s: %+v, want one meta with a phx_ref", user, state[user])
		}
	}
	for path, want := range map[string]int{
		"/api/rooms/nowhere/presence":                            http.StatusNotFound,
		"/api/rooms/" + url.PathEscape("no room!") + "/presence": http.StatusBadRequest,
	} {
		if status, body := httpGet(t, ts.HTTPURL()+path); status != want {
			t.Errorf("GET %s: %d %s, want %d", path, status, body, want)
		}
	}
}

// roomStream reads /api/rooms/{id}/events.
type roomStream struct {
	t      *testing.T
	events <-chan sseEvent
}

func openRoomStream(t *testing.T, ts *testServer, room string) *roomStream {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, ts.HTTPURL()+"/api/rooms/"+room+"/events", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Body.Close() })
	if ct := r.Header.Get("Content-Type"); r.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /api/rooms/%s/events: %d %s", room, r.StatusCode, ct)
	}
	return &roomStream{t: t, events: readEvents(bufio.NewReader(r.Body))}
}

// await reads events until one named name whose data satisfies match,
// skipping the others.
func (s *roomStream) await(what, name string, match func(data string) bool) {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("the stream ended before %s", what)
			}
			if ev.name == name && match(ev.data) {
				return
			}
		case <-deadline:
			s.t.Fatalf("no %s", what)
		}
	}
}

// roomEvent matches a RoomEvent of a name by a user.
func roomEvent(name, user string) func(string) bool {
	return func(data string) bool {
		var ev RoomEvent
		return json.Unmarshal([]byte(data), &ev) == nil && ev.Name == name && ev.User == user
	}
}

// presenceUsers matches presence (state, or a diff's joins or leaves) that
// lists exactly these users.
func presenceUsers(pick func(string) map[string]codec.PresenceEntry, users ...string) func(string) bool {
	return func(data string) bool {
		got := slices.Sorted(func(yield func(string) bool) {
			for u := range pick(data) {
				if !yield(u) {
					return
				}
			}
		})
		return slices.Equal(got, users)
	}
}

func stateOf(data string) map[string]codec.PresenceEntry {
	var s map[string]codec.PresenceEntry
	json.Unmarshal([]byte(data), &s)
	return s
}

func joinsOf(data string) map[string]codec.PresenceEntry {
	var d RoomPresenceDiff
	json.Unmarshal([]byte(data), &d)
	return d.Joins
}

func leavesOf(data string) map[string]codec.PresenceEntry {
	var d RoomPresenceDiff
	json.Unmarshal([]byte(data), &d)
	return d.Leaves
}

// The event stream of a room starts with its presence and then follows
// what happens in it as it happens, its application events and presence
// diffs included, through the room's stop and its next start.
func TestARoomsEventStreamFollowsItAcrossStops(t *testing.T) {
	ts := startServer(t, func(_ *Config, r *rooms.Config) { r.EmptyGrace = 100 * time.Millisecond })
	ctx := testContext(t)
	ada, _ := join(t, ts, "plaza", "ada")
	waitUntil(t, "ada's presence published", func() bool {
		_, state := ts.registry.PresenceSnapshot(nil)
		return len(state["plaza"]) == 1
	})
	s := openRoomStream(t, ts, "plaza")
	s.await("the state with ada", "presence_state", presenceUsers(stateOf, "ada"))

	bob, _ := join(t, ts, "plaza", "bob")
	s.await("bob's join", "event", roomEvent(codec.EventUserJoined, "bob"))
	s.await("bob in a presence diff", "presence_diff", presenceUsers(joinsOf, "bob"))

	if err := ada.Publish(ctx, "door_opened", map[string]any{"door": 3}); err != nil {
		t.Fatal(err)
	}
	s.await("ada's application event", "event", func(data string) bool {
		var ev RoomEvent
		return json.Unmarshal([]byte(data), &ev) == nil && ev.Name == "door_opened" && ev.User == "ada" &&
			strings.Contains(data, `"data":{"door":3}`)
	})

	for _, c := range []*client.Client{bob, ada} {
		if err := c.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.await("bob's leave", "event", roomEvent(codec.EventUserLeft, "bob"))
	s.await("ada leaving the presence", "presence_diff", func(data string) bool {
		_, left := leavesOf(data)["ada"]
		return left
	})
	waitUntil(t, "the room stopped", func() bool { return ts.registry.Room("plaza") == nil })

	join(t, ts, "plaza", "cy")
	s.await("cy's join in the room started again", "event", roomEvent(codec.EventUserJoined, "cy"))
}

func TestARoomsEventStreamNeedsTheAPIToken(t *testing.T) {
	secret := []byte("the secret")
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.AuthSecret = secret })
	room, err := ts.registry.CreateRoom(testContext(t), "plaza")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/rooms/" + room.ID + "/events", "/api/rooms/" + room.ID + "/presence"} {
		if status, _ := httpGet(t, ts.HTTPURL()+path); status != http.StatusUnauthorized {
			t.Errorf("GET %s without the API token: %d, want 401", path, status)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, ts.HTTPURL()+"/api/rooms/"+room.ID+"/presence", nil)
	req.Header.Set("Authorization", "Bearer "+APIToken(secret))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("GET presence with the API token: %d", r.StatusCode)
	}
}
