package transport

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posecast/posecast/rooms"
)

// maxAPIBody bounds the body of a rooms API request.
const maxAPIBody = 4 << 10

// Pages of GET /api/rooms: rooms per page unless limit says otherwise, and
// at most.
const (
	defaultRoomsPage = 100
	maxRoomsPage     = 1000
)

// APIRoom is a room in the JSON of the rooms API.
type APIRoom struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Live is true while the room runs on this node.
	Live bool `json:"live"`
	// Present is how many users are in the room on this node.
	Present int `json:"present"`
	// Entities are the room's environment entities (id → components), in
	// answers about one room.
	Entities map[string]rooms.Components `json:"entities,omitempty"`
}

// APIRoomList is the JSON of GET /api/rooms: a page of rooms, oldest first.
type APIRoomList struct {
	Rooms []APIRoom `json:"rooms"`
	// Next, when there may be more rooms, is the after parameter that asks
	// for the next page.
	Next string `json:"next,omitempty"`
}

// APIError is the JSON of every error the rooms API answers.
type APIError struct {
	Error string `json:"error"`
}

// CreateRoomRequest is the body of POST /api/rooms.
type CreateRoomRequest struct {
	Name string `json:"name"`
}

// api serves the rooms API under /api/ on the HTTP address.
type api struct {
	reg *rooms.Registry
	log *slog.Logger
	// token, when set, is the bearer token that changes and presence
	// need: the rooms API is for the application's backend (APIToken).
	token []byte
	// mayCreate reports whether a client's address may create one more
	// room now.
	mayCreate func(net.Addr) bool
}

// newAPI returns the handler of the rooms API:
//
//	POST   /api/rooms       {"name": ...} → 201 and the room, with its entities
//	GET    /api/rooms       → the rooms, oldest first, with how many are present
//	GET    /api/rooms/{id}  → one room with its entities
//	DELETE /api/rooms/{id}  → 204; 409 while people are in the room
//	GET    /api/rooms/{id}/presence → who is in the room, Phoenix shape
//	GET    /api/rooms/{id}/events   → server-sent events: the room's events and presence diffs
//	GET    /api/presence?match=RE         → the presence of the matching rooms
//	GET    /api/presence/stream?match=RE  → server-sent events: state, then diffs
//
// With a token, POST, DELETE and presence need "Authorization: Bearer
// <token>", over HTTPS unless from loopback.
func newAPI(reg *rooms.Registry, presence *rooms.Collector, interval time.Duration, log *slog.Logger, token []byte, mayCreate func(net.Addr) bool) http.Handler {
	a := &api{reg: reg, log: log, token: token, mayCreate: mayCreate}
	p := &presenceAPI{api: a, presence: presence, interval: interval}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/presence", a.authorized(p.handlePresence))
	mux.HandleFunc("GET /api/presence/stream", a.authorized(p.handlePresenceStream))
	mux.HandleFunc("POST /api/rooms", a.authorized(a.handleCreate))
	mux.HandleFunc("GET /api/rooms", a.handleList)
	mux.HandleFunc("GET /api/rooms/{id}", a.handleGet)
	mux.HandleFunc("DELETE /api/rooms/{id}", a.authorized(a.handleDelete))
	mux.HandleFunc("GET /api/rooms/{id}/presence", a.authorized(p.handleRoomPresence))
	mux.HandleFunc("GET /api/rooms/{id}/events", a.authorized(p.handleRoomEvents))
	mux.HandleFunc("/api/rooms", methodNotAllowed("GET, POST"))
	mux.HandleFunc("/api/rooms/{id}", methodNotAllowed("GET, DELETE"))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, APIError{Error: "no such API: " + r.URL.Path})
	})
	return mux
}

// methodNotAllowed answers a method that a path of the API does not serve.
func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, APIError{Error: r.Method + " is not served here; use " + allow})
	}
}

// authorized lets a request through only with the API token as its bearer
// token, when the server has one. A token sent over plain HTTP from
// another machine is refused, and the client told to use HTTPS: whoever
// sees it on the way could use it.
func (a *api) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(a.token) > 0 {
			token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if ok && r.TLS == nil && !fromLoopback(r) {
				a.fail(w, http.StatusForbidden, "the API token travels only over HTTPS (the HTTP port serves it too); change it, as it was sent in the clear")
				return
			}
			if !ok || subtle.ConstantTimeCompare([]byte(token), a.token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="posecast"`)
				a.fail(w, http.StatusUnauthorized, "this needs the server's API token as a bearer token (posecast token --api)")
				return
			}
		}
		h(w, r)
	}
}

// fromLoopback reports whether r came from this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *api) handleCreate(w http.ResponseWriter, r *http.Request) {
	// A JSON body, declared as such: a page of another site can send a
	// "simple" text/plain POST without asking, but not this.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		a.fail(w, http.StatusUnsupportedMediaType, "the body must be application/json")
		return
	}
	if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil && !a.mayCreate(addr) {
		w.Header().Set("Retry-After", "1")
		a.fail(w, http.StatusTooManyRequests, "too many new rooms from this address")
		return
	}
	var req CreateRoomRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			a.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxAPIBody))
			return
		}
		a.fail(w, http.StatusBadRequest, "body must be a JSON object like {\"name\": \"Lobby\"}: "+err.Error())
		return
	}
	if dec.More() {
		a.fail(w, http.StatusBadRequest, "body must hold one JSON object")
		return
	}
	room, err := a.reg.CreateRoom(r.Context(), req.Name)
	if err != nil {
		a.failRooms(w, err)
		return
	}
	w.Header().Set("Location", "/api/rooms/"+room.ID)
	writeJSON(w, http.StatusCreated, apiRoom(room))
}

func (a *api) handleList(w http.ResponseWriter, r *http.Request) {
	limit := defaultRoomsPage
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRoomsPage {
			a.fail(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d", maxRoomsPage))
			return
		}
		limit = n
	}
	after, err := parseRoomCursor(r.URL.Query().Get("after"))
	if err != nil {
		a.fail(w, http.StatusBadRequest, "after must be the next of an earlier page: "+err.Error())
		return
	}
	list, err := a.reg.ListRooms(r.Context(), after, limit)
	if err != nil {
		a.failRooms(w, err)
		return
	}
	out := APIRoomList{Rooms: make([]APIRoom, len(list))}
	for i, room := range list {
		out.Rooms[i] = apiRoom(room)
	}
	if len(list) == limit {
		out.Next = formatRoomCursor(rooms.CursorAfter(list[len(list)-1].RoomInfo))
	}
	writeJSON(w, http.StatusOK, out)
}

// formatRoomCursor spells a cursor for the after parameter: the creation
// time in Unix nanoseconds and the room id, base64url-encoded.
func formatRoomCursor(c rooms.RoomCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixNano(), 10) + ":" + c.ID))
}

// parseRoomCursor reads what formatRoomCursor wrote; empty is the start.
func parseRoomCursor(s string) (rooms.RoomCursor, error) {
	if s == "" {
		return rooms.RoomCursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return rooms.RoomCursor{}, errors.New("not base64url")
	}
	nanos, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || err != nil || !rooms.ValidID(id) {
		return rooms.RoomCursor{}, errors.New("not a cursor")
	}
	return rooms.RoomCursor{CreatedAt: time.Unix(0, n), ID: id}, nil
}

func (a *api) handleGet(w http.ResponseWriter, r *http.Request) {
	room, err := a.reg.DescribeRoom(r.Context(), r.PathValue("id"))
	if err != nil {
		a.failRooms(w, err)
		return
	}
	out := apiRoom(room)
	if out.Entities == nil {
		out.Entities = map[string]rooms.Components{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := a.reg.DeleteRoom(r.Context(), r.PathValue("id")); err != nil {
		a.failRooms(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// failRooms answers an error of the registry with its status code.
func (a *api) failRooms(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, rooms.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, rooms.ErrRoomNotFound):
		status = http.StatusNotFound
	case errors.Is(err, rooms.ErrRoomBusy), errors.As(err, new(*rooms.ElsewhereError)):
		status = http.StatusConflict
	case errors.Is(err, rooms.ErrUnavailable), errors.Is(err, rooms.ErrClosed):
		status = http.StatusServiceUnavailable
		a.log.Warn("rooms API", "err", err)
	default:
		a.log.Error("rooms API", "err", err)
	}
	a.fail(w, status, strings.TrimPrefix(err.Error(), rooms.ErrInvalid.Error()+": "))
}

func (a *api) fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, APIError{Error: msg})
}

func apiRoom(v rooms.RoomView) APIRoom {
	return APIRoom{ID: v.ID, Name: v.Name, CreatedAt: v.CreatedAt, Live: v.Live, Present: v.Present, Entities: v.Entities}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
