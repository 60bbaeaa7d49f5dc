package transport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// roomEventBuffer bounds what a room's event stream holds for a reader
// that is behind; past it the stream ends with an "overflow" event rather
// than hold up the room.
const roomEventBuffer = 1024

// sseStream writes server-sent events to an HTTP response.
type sseStream struct {
	w       http.ResponseWriter
	flusher http.Flusher
}

// startSSE starts an event stream as the answer to a request, lifting the
// server's read and write deadlines, which do not apply to a stream. It
// answers the request itself and returns nil when w cannot stream.
func (a *api) startSSE(w http.ResponseWriter) *sseStream {
	flusher, ok := w.(http.Flusher)
	if !ok {
		a.fail(w, http.StatusInternalServerError, "streaming unsupported")
		return nil
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	return &sseStream{w: w, flusher: flusher}
}

// send writes one event with v as its JSON data.
func (s *sseStream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

// keepAlive writes a comment, so that proxies keep a quiet stream open.
func (s *sseStream) keepAlive() error {
	if _, err := fmt.Fprint(s.w, ": keep-alive\n\n"); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

// exactly matches the one room id.
func exactly(id string) *regexp.Regexp { return regexp.MustCompile("^" + regexp.QuoteMeta(id) + "$") }

// handleRoomPresence answers GET /api/rooms/{id}/presence: who is in the
// room now, wherever it runs, {user: {metas: [...]}} as Phoenix.Presence
// lists it.
func (a *presenceAPI) handleRoomPresence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.reg.DescribeRoom(r.Context(), id); err != nil {
		a.failRooms(w, err)
		return
	}
	state := a.presence.Snapshot(exactly(id))[id]
	if state == nil {
		state = map[string]codec.PresenceEntry{}
	}
	writeJSON(w, http.StatusOK, state)
}

// RoomEvent is the data of an "event" of /api/rooms/{id}/events: one of
// the room's events (a user joined, left, went stale or recovered; an
// entity was created, updated or deleted; an application event).
type RoomEvent struct {
	Name string `json:"name"`
	// User is who caused it; empty for the room itself.
	User string `json:"user,omitempty"`
	// Entity is the entity it concerns, if any.
	Entity string `json:"entity,omitempty"`
	// Data is the event's payload: an application event's data, a created
	// entity's components, an updated entity's changed components (null
	// for a removed one).
	Data any       `json:"data,omitempty"`
	At   time.Time `json:"at"`
}

// RoomPresenceDiff is the data of a "presence_diff" event of
// /api/rooms/{id}/events: by user, the metas that joined and those that
// left, as Phoenix.Presence's presence_diff.
type RoomPresenceDiff struct {
	Joins  map[string]codec.PresenceEntry `json:"joins"`
	Leaves map[string]codec.PresenceEntry `json:"leaves"`
}

// sseItem is one event waiting to be written.
type sseItem struct {
	name string
	data any
}

// handleRoomEvents answers GET /api/rooms/{id}/events with server-sent
// events: "presence_state" (the room's presence on this node, by user), then
// as they happen "event" (RoomEvent) and "presence_diff"
// (RoomPresenceDiff), across the room's stops and starts on this node. In a
// cluster the room's events are on the node that runs it: another node
// answers 421 and names it. A reader that falls roomEventBuffer events
// behind gets "overflow" and the end of the stream.
func (a *presenceAPI) handleRoomEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.reg.DescribeRoom(r.Context(), id); err != nil {
		a.failRooms(w, err)
		return
	}
	owner, here, err := a.reg.Locate(r.Context(), id, false)
	switch {
	case err != nil:
		a.failRooms(w, err)
		return
	case !here:
		writeJSON(w, http.StatusMisdirectedRequest, roomElsewhere{
			Error: fmt.Sprintf("room %s runs on node %s: ask that node (GET /cert-hash?room=%s names it)", id, owner.Node, id),
			Node:  owner.Node,
		})
		return
	}
	s := a.startSSE(w)
	if s == nil {
		return
	}

	// The listeners run under the room's or the presence hub's lock: they
	// only queue, and a full queue ends the stream.
	items := make(chan sseItem, roomEventBuffer)
	overflow := make(chan struct{})
	var overflowOnce sync.Once
	push := func(it sseItem) {
		select {
		case items <- it:
		default:
			overflowOnce.Do(func() { close(overflow) })
		}
	}
	stopPresence := a.reg.WatchPresence(func(_ uint64, state map[string]rooms.RoomPresence) {
		push(sseItem{"presence_state", presenceEntries(state[id])})
	}, func(u rooms.PresenceUpdate) {
		switch {
		case u.Room != id:
		case u.Gone:
			push(sseItem{"presence_state", map[string]codec.PresenceEntry{}})
		default:
			push(sseItem{"presence_diff", RoomPresenceDiff{Joins: nonNil(u.Joins), Leaves: nonNil(u.Leaves)}})
		}
	})
	defer stopPresence()
	var mu sync.Mutex // guards unsubscribe
	var unsubscribe []func()
	stopStarts := a.reg.OnRoomStart(func(room *rooms.Room) {
		if room.ID() != id {
			return
		}
		cancel := room.Subscribe(func(ev rooms.Event) {
			push(sseItem{"event", RoomEvent{Name: ev.Name, User: ev.User, Entity: ev.Entity, Data: ev.Data, At: ev.At}})
		})
		mu.Lock()
		unsubscribe = append(unsubscribe, cancel)
		mu.Unlock()
	})
	defer func() {
		stopStarts()
		mu.Lock()
		defer mu.Unlock()
		for _, cancel := range unsubscribe {
			cancel()
		}
	}()

	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-overflow:
			s.send("overflow", APIError{Error: fmt.Sprintf("the stream fell %d events behind; read it again for the state now", roomEventBuffer)})
			return
		case it := <-items:
			err = s.send(it.name, it.data)
		case <-keepAlive.C:
			err = s.keepAlive()
		}
		if err != nil {
			return
		}
	}
}

// roomElsewhere is the answer of a node that does not run the room.
type roomElsewhere struct {
	Error string `json:"error"`
	Node  string `json:"node"`
}

// presenceEntries is a room's presence as Phoenix lists it: by user,
// {metas: [...]}.
func presenceEntries(p rooms.RoomPresence) map[string]codec.PresenceEntry {
	out := make(map[string]codec.PresenceEntry, len(p))
	for user, metas := range p {
		out[user] = codec.PresenceEntry{Metas: metas}
	}
	return out
}

// nonNil is m, or an empty map for nil, so that JSON shows {} not null.
func nonNil(m map[string]codec.PresenceEntry) map[string]codec.PresenceEntry {
	if m == nil {
		return map[string]codec.PresenceEntry{}
	}
	return m
}
