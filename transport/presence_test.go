package transport

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
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

// collectionUsers lists a collection as room/user, sorted.
func collectionUsers[E any](col map[string]map[string]E) string {
	var out []string
	for room, users := range col {
		for user := range users {
			out = append(out, room+"/"+user)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func fastPresence(cfg *Config, _ *rooms.Config) { cfg.PresenceInterval = 100 * time.Millisecond }

func TestAPresenceSubscriptionFollowsTheRoomsItMatches(t *testing.T) {
	ts := startServer(t, fastPresence)
	ctx := testContext(t)
	watcher := dial(t, ts) // a lobby page: in no room
	join(t, ts, "lobby:1", "ada")
	sub, err := watcher.SubscribePresence(ctx, codec.SubscribePresence{Match: "^lobby:"})
	if err != nil {
		t.Fatal(err)
	}
	// The state comes at once, before any interval: ada, once her join's
	// tick has published her presence.
	waitFor(t, watcher, "ada in the collection", func(v *client.View) bool {
		return collectionUsers(v.Collections[sub]) == "lobby:1/ada"
	})
	bob, _ := join(t, ts, "lobby:2", "bob")
	join(t, ts, "game:1", "cy")
	waitFor(t, watcher, "bob in the collection, cy never", func(v *client.View) bool {
		return collectionUsers(v.Collections[sub]) == "lobby:1/ada lobby:2/bob"
	})
	if err := bob.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "bob gone from the collection", func(v *client.View) bool {
		return collectionUsers(v.Collections[sub]) == "lobby:1/ada"
	})

	// The HTTP snapshot is the same.
	status, body := httpGet(t, ts.HTTPURL()+"/api/presence?match="+url.QueryEscape("^lobby:"))
	var snap map[string]map[string]codec.PresenceEntry
	if status != http.StatusOK || json.Unmarshal(body, &snap) != nil {
		t.Fatalf("GET /api/presence: %d %s", status, body)
	}
	if got := collectionUsers(snap); got != "lobby:1/ada" {
		t.Errorf("HTTP snapshot %q, want lobby:1/ada", got)
	}
	if !strings.Contains(string(body), `"phx_ref"`) || !strings.Contains(string(body), `"metas"`) {
		t.Errorf("snapshot is not in Phoenix's shape: %s", body)
	}

	// Unsubscribed, nothing more arrives.
	if err := watcher.UnsubscribePresence(ctx, sub); err != nil {
		t.Fatal(err)
	}
	before := watcher.View().CollectionMessages
	join(t, ts, "lobby:3", "dee")
	time.Sleep(400 * time.Millisecond)
	if after := watcher.View().CollectionMessages; after != before {
		t.Errorf("%d presence messages after unsubscribing", after-before)
	}
}

func TestAPresenceSubscriptionSendsOneMessagePerInterval(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	watcher := dial(t, ts)
	sub, err := watcher.SubscribePresence(ctx, codec.SubscribePresence{Match: "^hall$", IntervalMillis: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// Ten people join within one interval: one message brings them all.
	for i := range 10 {
		join(t, ts, "hall", fmt.Sprint("u", i))
	}
	waitFor(t, watcher, "ten users in the hall", func(v *client.View) bool { return len(v.Collections[sub]["hall"]) == 10 })
	if n := watcher.View().CollectionMessages; n > 3 {
		t.Errorf("%d presence messages for ten joins: want the state and one or two diffs", n)
	}
}

func TestPresenceSubscriptionsAreChecked(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	c := dial(t, ts)
	for i := range maxSubscriptions {
		if _, err := c.SubscribePresence(ctx, codec.SubscribePresence{Match: fmt.Sprint("^r", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		req  codec.SubscribePresence
		code string
	}{
		{"one subscription too many", codec.SubscribePresence{Match: "^more"}, codec.CodeInvalid},
		{"not a regular expression", codec.SubscribePresence{Match: "("}, codec.CodeInvalid},
		{"a pattern too long", codec.SubscribePresence{Match: strings.Repeat("a", rooms.MaxMatchLength+1)}, codec.CodeInvalid},
		{"an interval too short", codec.SubscribePresence{Match: "x", IntervalMillis: 10}, codec.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SubscribePresence(ctx, tt.req)
			var rerr *client.RequestError
			if !errors.As(err, &rerr) || rerr.Code != tt.code {
				t.Errorf("got %v, want %s", err, tt.code)
			}
		})
	}
	var rerr *client.RequestError
	if err := c.UnsubscribePresence(ctx, 999); !errors.As(err, &rerr) || rerr.Code != codec.CodeNotFound {
		t.Errorf("unsubscribing from nothing: %v, want not_found", err)
	}
}

func TestPresenceAcrossRoomsNeedsATokenWithASecret(t *testing.T) {
	secret := []byte("presence secret")
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.AuthSecret = secret })
	ctx := testContext(t)
	c := dial(t, ts)
	sign := func(watch string) string {
		tok, err := SignToken(secret, Claims{Watch: watch, Expires: time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	joinToken, err := SignToken(secret, Claims{Room: "lobby", User: "ada", Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		ok          bool
	}{
		{"no token", "", false},
		{"a token for another pattern", sign("^.*$"), false},
		{"a join token", joinToken, false},
		{"a token for this pattern", sign("^lobby"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SubscribePresence(ctx, codec.SubscribePresence{Match: "^lobby", Token: tt.token})
			var rerr *client.RequestError
			if tt.ok && err != nil || !tt.ok && (!errors.As(err, &rerr) || rerr.Code != codec.CodeUnauthorized) {
				t.Errorf("subscribe = %v", err)
			}
		})
	}
	// A join token has no pattern: it watches nothing, not even the empty
	// pattern that matches every room.
	if _, err := c.SubscribePresence(ctx, codec.SubscribePresence{Match: "", Token: joinToken}); err == nil {
		t.Error("a join token watches every room")
	}
	// A presence token joins nothing.
	if _, err := c.Join(ctx, codec.Join{Room: "lobby", Token: sign("^lobby")}); err == nil {
		t.Error("a presence token joined a room")
	}
	// Over HTTP, presence needs the secret as a bearer token.
	for _, path := range []string{"/api/presence?match=x", "/api/presence/stream?match=x"} {
		if status, _ := httpGet(t, ts.HTTPURL()+path); status != http.StatusUnauthorized {
			t.Errorf("GET %s without the secret: %d", path, status)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.HTTPURL()+"/api/presence?match=x", nil)
	req.Header.Set("Authorization", "Bearer "+APIToken(secret))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("GET /api/presence with the secret: %d", r.StatusCode)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readEvents reads server-sent events from r into a channel until it ends.
func readEvents(r *bufio.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func TestThePresenceStreamSendsTheStateThenDiffs(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	join(t, ts, "lobby:1", "ada")
	waitUntil(t, "ada's presence published", func() bool {
		_, state := ts.registry.PresenceSnapshot(nil)
		return len(state["lobby:1"]) == 1
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.HTTPURL()+"/api/presence/stream?interval=100ms&match="+url.QueryEscape("^lobby:"), nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if ct := r.Header.Get("Content-Type"); r.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", r.StatusCode, ct)
	}
	events := readEvents(bufio.NewReader(r.Body))
	next := func() sseEvent {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return sseEvent{}
	}
	first := next()
	var state map[string]map[string]codec.PresenceEntry
	if first.name != "state" || json.Unmarshal([]byte(first.data), &state) != nil || collectionUsers(state) != "lobby:1/ada" {
		t.Fatalf("first event %+v, want the state with ada", first)
	}
	join(t, ts, "lobby:2", "bob")
	join(t, ts, "game", "cy")
	diff := next()
	var d PresenceStreamDiff
	if diff.name != "diff" || json.Unmarshal([]byte(diff.data), &d) != nil || collectionUsers(d.Joins) != "lobby:2/bob" || len(d.Leaves) != 0 {
		t.Errorf("second event %+v, want bob joining", diff)
	}
	for _, bad := range []string{"match=(", "match=x&interval=1ms", "match=x&interval=soon"} {
		if status, _ := httpGet(t, ts.HTTPURL()+"/api/presence/stream?"+bad); status != http.StatusBadRequest {
			t.Errorf("stream?%s: %d, want 400", bad, status)
		}
	}
}

func TestCertHashForARoomOnOneNodeNamesThisNode(t *testing.T) {
	ts := startServer(t)
	status, body := httpGet(t, ts.HTTPURL()+"/cert-hash?room=lobby")
	var resp codec.CertHashResponse
	if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		t.Fatalf("GET /cert-hash?room=lobby: %d %s", status, body)
	}
	current, _ := ts.CertHashes()
	if resp.URL != ts.URL() || resp.Current != current {
		t.Errorf("cert-hash for a room: %+v, want this node %s", resp, ts.URL())
	}
	if status, _ := httpGet(t, ts.HTTPURL()+"/cert-hash?room="+url.QueryEscape("no room!")); status != http.StatusBadRequest {
		t.Errorf("cert-hash for an invalid room id: %d, want 400", status)
	}
	// Connect goes through it.
	c, joined, err := client.Connect(testContext(t), client.ConnectConfig{HTTP: ts.HTTPURL(), Join: codec.Join{Room: "lobby", Name: "ada"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if joined.Room != "lobby" {
		t.Errorf("joined %+v", joined)
	}
}
