package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// apiDo sends a rooms API request with a raw body and returns the status
// and the body; every answer must be JSON.
func apiDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); len(b) > 0 && ct != "application/json" {
		t.Errorf("%s %s answered %s: %s", method, url, ct, b)
	}
	return resp.StatusCode, b
}

// apiJSON is apiDo decoding the answer into out.
func apiJSON(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	code, b := apiDo(t, method, url, body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return code
}

func TestTheRoomsAPIManagesRooms(t *testing.T) {
	ts := startServer(t)
	api := ts.HTTPURL() + "/api/rooms"

	var lobby APIRoom
	if code := apiJSON(t, "POST", api, `{"name": "Lobby"}`, &lobby); code != http.StatusCreated {
		t.Fatalf("create = %d", code)
	}
	if !rooms.ValidID(lobby.ID) || lobby.Name != "Lobby" || lobby.CreatedAt.IsZero() {
		t.Errorf("created %+v", lobby)
	}
	spawns := 0
	for _, c := range lobby.Entities {
		if c[rooms.ComponentSpawnPoint] == true {
			spawns++
		}
	}
	if spawns != 1 || len(lobby.Entities) < 4 {
		t.Errorf("a new room has %d spawn points among %d entities: %v", spawns, len(lobby.Entities), lobby.Entities)
	}

	var list APIRoomList
	if code := apiJSON(t, "GET", api, "", &list); code != http.StatusOK || len(list.Rooms) != 1 || list.Rooms[0].ID != lobby.ID || list.Rooms[0].Present != 0 || list.Rooms[0].Entities != nil {
		t.Errorf("list = %d %+v", code, list)
	}

	c, _ := join(t, ts, lobby.ID, "ada")
	door, err := c.CreateEntity(testContext(t), codec.Components{"door": true})
	if err != nil {
		t.Fatal(err)
	}
	if code := apiJSON(t, "GET", api, "", &list); code != http.StatusOK || len(list.Rooms) != 1 || list.Rooms[0].Present != 1 || !list.Rooms[0].Live {
		t.Errorf("list with ada in the room = %d %+v", code, list)
	}
	var one APIRoom
	if code := apiJSON(t, "GET", api+"/"+lobby.ID, "", &one); code != http.StatusOK || one.Present != 1 || one.Entities[door]["door"] != true || len(one.Entities) != len(lobby.Entities)+1 {
		t.Errorf("get = %d %+v", code, one)
	}

	var apiErr APIError
	if code := apiJSON(t, "DELETE", api+"/"+lobby.ID, "", &apiErr); code != http.StatusConflict || !strings.Contains(apiErr.Error, "1 users are in room") {
		t.Errorf("delete with ada in the room = %d %q, want 409", code, apiErr.Error)
	}
	if err := c.Leave(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if code, body := apiDo(t, "DELETE", api+"/"+lobby.ID, ""); code != http.StatusNoContent {
		t.Errorf("delete of the emptied room = %d %s", code, body)
	}
	if code := apiJSON(t, "GET", api+"/"+lobby.ID, "", nil); code != http.StatusNotFound {
		t.Errorf("get of a deleted room = %d", code)
	}
	if code := apiJSON(t, "GET", api, "", &list); code != http.StatusOK || len(list.Rooms) != 0 {
		t.Errorf("list after the delete = %d %+v", code, list)
	}

	// A join to an id that no one created makes the room, as ever; that
	// includes the id of a deleted room, which comes back new.
	if _, err := c.Join(testContext(t), codec.Join{Room: lobby.ID, Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	var again APIRoom
	if code := apiJSON(t, "GET", api+"/"+lobby.ID, "", &again); code != http.StatusOK || again.Name != lobby.ID || again.Entities[door] != nil {
		t.Errorf("the room made again by a join = %d %+v", code, again)
	}
}

func TestTheRoomsAPIRefusesBadInput(t *testing.T) {
	ts := startServer(t)
	api := ts.HTTPURL() + "/api/rooms"
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantError                string
	}{
		{"a body that is not JSON", "POST", "", `{"name": `, http.StatusBadRequest, "JSON object"},
		{"a name that is not a string", "POST", "", `{"name": 5}`, http.StatusBadRequest, "JSON object"},
		{"an unknown field", "POST", "", `{"name": "a", "size": 3}`, http.StatusBadRequest, `unknown field "size"`},
		{"two objects", "POST", "", `{"name": "a"} {"name": "b"}`, http.StatusBadRequest, "one JSON object"},
		{"no name", "POST", "", `{}`, http.StatusBadRequest, "name is required"},
		{"a blank name", "POST", "", `{"name": "   "}`, http.StatusBadRequest, "name is required"},
		{"an over-long name", "POST", "", `{"name": "` + strings.Repeat("é", 33) + `"}`, http.StatusBadRequest, "name is 66 bytes, limit 64"},
		{"a name with a control character", "POST", "", `{"name": "a\u0007b"}`, http.StatusBadRequest, "printable"},
		{"a body over the limit", "POST", "", `{"name": "` + strings.Repeat("x", maxAPIBody) + `"}`, http.StatusRequestEntityTooLarge, "body over"},
		{"an unknown room", "GET", "/nope", "", http.StatusNotFound, "room not found: nope"},
		{"a room id that cannot be one", "GET", "/no%20pe", "", http.StatusBadRequest, `room id "no pe"`},
		{"an over-long room id", "GET", "/" + strings.Repeat("r", 65), "", http.StatusBadRequest, "room id"},
		{"the delete of an unknown room", "DELETE", "/nope", "", http.StatusNotFound, "room not found"},
		{"a path the API does not have", "GET", "/nope/entities", "", http.StatusNotFound, "no such API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got APIError
			code := apiJSON(t, tt.method, api+tt.path, tt.body, &got)
			if code != tt.wantCode || !strings.Contains(got.Error, tt.wantError) {
				t.Errorf("%s %s = %d %q, want %d with %q", tt.method, tt.path, code, got.Error, tt.wantCode, tt.wantError)
			}
		})
	}
	if code, _ := apiDo(t, "PUT", api, `{"name": "a"}`); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT /api/rooms = %d, want 405", code)
	}
	var list APIRoomList
	if code := apiJSON(t, "GET", api, "", &list); code != http.StatusOK || len(list.Rooms) != 0 {
		t.Errorf("bad requests made rooms: %+v", list)
	}
}

// downStore is a store that cannot be reached.
type downStore struct{ rooms.MemoryStore }

var errDown = errors.New("store is down")

func (*downStore) CreateRoom(context.Context, rooms.RoomInfo, map[string]rooms.Components) (bool, error) {
	return false, errDown
}
func (*downStore) Rooms(context.Context, rooms.RoomCursor, int) ([]rooms.RoomInfo, error) {
	return nil, errDown
}
func (*downStore) Room(context.Context, string) (rooms.RoomInfo, error) {
	return rooms.RoomInfo{}, errDown
}
func (*downStore) DeleteRoom(context.Context, string) error { return errDown }

func TestTheRoomsAPIAnswers503WhenTheStoreIsDown(t *testing.T) {
	reg, err := rooms.NewRegistry(&downStore{}, rooms.Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	h := newAPI(reg, rooms.NewCollector(), time.Second, testLogger(), nil, func(net.Addr) bool { return true })
	for _, req := range []struct{ method, path, body string }{
		{"POST", "/api/rooms", `{"name": "a"}`},
		{"GET", "/api/rooms", ""},
		{"GET", "/api/rooms/r1", ""},
		{"DELETE", "/api/rooms/r1", ""},
	} {
		w := httptest.NewRecorder()
		hr := httptest.NewRequest(req.method, req.path, strings.NewReader(req.body))
		hr.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, hr)
		var got APIError
		json.Unmarshal(w.Body.Bytes(), &got)
		// The client learns that the store cannot be reached, and nothing
		// of its insides: those go to the log.
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(got.Error, "the store cannot be reached now") || strings.Contains(got.Error, errDown.Error()) {
			t.Errorf("%s %s = %d %q, want 503 saying the store cannot be reached, without its details", req.method, req.path, w.Code, got.Error)
		}
	}
}

func TestMetricsShowTheChangesWaitingForTheStore(t *testing.T) {
	ts := startServer(t)
	if m := scrape(t, ts); !strings.Contains(m, "\nposecast_store_pending_changes 0\n") {
		t.Errorf("/metrics lacks the store backlog gauge")
	}
}

func TestTheRoomsAPIRefusesChangesOtherPagesCouldSend(t *testing.T) {
	secret := []byte("backend secret")
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.AuthSecret = secret })
	post := func(contentType, auth string) int {
		req, err := http.NewRequestWithContext(testContext(t), "POST", ts.HTTPURL()+"/api/rooms", strings.NewReader(`{"name": "x"}`))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name        string
		contentType string
		auth        string
		want        int
	}{
		{"no secret", "application/json", "", http.StatusUnauthorized},
		{"a wrong secret", "application/json", "Bearer guess", http.StatusUnauthorized},
		{"the secret itself", "application/json", "Bearer backend secret", http.StatusUnauthorized},
		{"a simple cross-site form post", "text/plain", "Bearer " + APIToken([]byte("backend secret")), http.StatusUnsupportedMediaType},
		{"the backend", "application/json; charset=utf-8", "Bearer " + APIToken([]byte("backend secret")), http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(tt.contentType, tt.auth); got != tt.want {
				t.Errorf("POST = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTheRoomsAPIListsAPageAtATime(t *testing.T) {
	ts := startServer(t)
	api := ts.HTTPURL() + "/api/rooms"
	var made []string
	for i := range 5 {
		var room APIRoom
		if code := apiJSON(t, "POST", api, fmt.Sprintf(`{"name": "room %d"}`, i), &room); code != http.StatusCreated {
			t.Fatalf("create = %d", code)
		}
		made = append(made, room.ID)
	}

	var listed []string
	pages := 0
	for url := api + "?limit=2"; ; pages++ {
		var page APIRoomList
		if code := apiJSON(t, "GET", url, "", &page); code != http.StatusOK || len(page.Rooms) > 2 {
			t.Fatalf("GET %s = %d %+v", url, code, page)
		}
		for _, r := range page.Rooms {
			listed = append(listed, r.ID)
		}
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("the pages do not end")
		}
		url = api + "?limit=2&after=" + page.Next
	}
	if fmt.Sprint(listed) != fmt.Sprint(made) || pages != 2 {
		t.Errorf("listed %v in %d pages, want %v, oldest first, in 3", listed, pages+1, made)
	}

	bad := []struct{ name, query, says string }{
		{"a limit of 0", "?limit=0", "limit must be"},
		{"a limit past the most", "?limit=1001", "limit must be"},
		{"a limit that is no number", "?limit=ten", "limit must be"},
		{"an after that is not base64url", "?after=%25%25", "after must be"},
		{"an after that is no cursor", "?after=bm90LWEtY3Vyc29y", "after must be"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			var apiErr APIError
			if code := apiJSON(t, "GET", api+tt.query, "", &apiErr); code != http.StatusBadRequest || !strings.Contains(apiErr.Error, tt.says) {
				t.Errorf("GET %s = %d %q, want 400 saying %q", tt.query, code, apiErr.Error, tt.says)
			}
		})
	}
}

func TestAJoinWhileTheStoreIsDownSaysSoWithoutItsInsides(t *testing.T) {
	ts := startServerOn(t, &downStore{})
	c := dial(t, ts)
	_, err := c.Join(testContext(t), codec.Join{Room: "lobby"})
	var rerr *client.RequestError
	if !errors.As(err, &rerr) || rerr.Code != codec.CodeUnavailable || strings.Contains(rerr.Message, errDown.Error()) {
		t.Errorf("join = %v, want unavailable without the store's own words", err)
	}
}

func TestTheAPITokenTravelsOnlyOverHTTPSFromAfar(t *testing.T) {
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	token := APIToken([]byte("s"))
	h := newAPI(reg, rooms.NewCollector(), time.Second, testLogger(), []byte(token), func(net.Addr) bool { return true })
	tests := []struct {
		name   string
		remote string
		tls    bool
		want   int
	}{
		{"from another machine over HTTP", "192.0.2.7:40000", false, http.StatusForbidden},
		{"from another machine over HTTPS", "192.0.2.7:40000", true, http.StatusOK},
		{"from this machine over HTTP", "127.0.0.1:40000", false, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/presence?match=x", nil)
			r.RemoteAddr = tt.remote
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			r.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("%d %s, want %d", w.Code, w.Body, tt.want)
			}
		})
	}
}
