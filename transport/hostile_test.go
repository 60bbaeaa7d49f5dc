package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func TestJoinTokens(t *testing.T) {
	secret := []byte("the server's secret")
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.AuthSecret = secret })
	token := func(room, user string, ttl time.Duration) string {
		tok, err := SignToken(secret, Claims{Room: room, User: user, Name: "Ada L.", Expires: time.Now().Add(ttl).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forged, _ := SignToken([]byte("a guess"), Claims{Room: "lobby", User: "ada", Expires: time.Now().Add(time.Hour).Unix()})
	tests := []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"an expired token", token("lobby", "ada", -time.Minute)},
		{"a token for another room", token("vault", "ada", time.Hour)},
		{"a forged signature", forged},
	}
	c := dial(t, ts)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Join(testContext(t), codec.Join{Room: "lobby", Token: tt.token})
			var re *client.RequestError
			if !errors.As(err, &re) || re.Code != codec.CodeUnauthorized {
				t.Errorf("join: %v, want %s", err, codec.CodeUnauthorized)
			}
		})
	}

	// A valid token works, and its user is the one the client is, whatever
	// the client claims.
	valid := token("lobby", "ada", time.Hour)
	if err := c.SendRaw(rawFrame(t, map[string]any{"type": "join", "ref": 1, "room": "lobby", "user": "mallory", "token": valid})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "joined", func(v *client.View) bool { return v.User != "" && v.Entities != nil })
	if j := c.View(); j.User != "ada" || j.Token != "" {
		t.Errorf("joined as %q with token %q, want the token's user ada and no token back", j.User, j.Token)
	}
	// Two sessions with one token are one user on two devices.
	second := dial(t, ts)
	if _, err := second.Join(testContext(t), codec.Join{Room: "lobby", Token: valid}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "ada on two devices", func(v *client.View) bool {
		metas := v.Presence["ada"]
		return len(metas) == 2 && metas[0].Name == "Ada L." && len(v.Presence) == 1
	})
	if n := testutil.ToFloat64(ts.metrics.rejUnauthorized); n != float64(len(tests)) {
		t.Errorf("%v unauthorized joins counted, want %d", n, len(tests))
	}
}

func TestDevelopmentModeMakesUsersUp(t *testing.T) {
	ts := startServer(t) // no auth secret
	watcher, _ := join(t, ts, "lobby", "watcher")
	ada, _ := join(t, ts, "lobby", "ada")
	if err := ada.SendPose(pose(7, 1, 1.6, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "ada's pose", func(v *client.View) bool { return v.Poses["ada"].Time == 7 })

	forged, err := SignToken([]byte("a guess"), Claims{Room: "lobby", User: "ada", Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		join map[string]any // sent as it is
	}{
		{"claiming ada's id", map[string]any{"user": "ada"}},
		{"with a token the server did not sign", map[string]any{"user": "ada", "token": forged}},
		{"with ada's token for another room", map[string]any{"token": token(t, ts, "vault", "ada")}},
		{"with ada's token from another server, or this one before a restart", map[string]any{"token": token(t, startServer(t), "lobby", "ada")}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mallory := dial(t, ts)
			tt.join["type"], tt.join["ref"], tt.join["room"] = "join", 100+i, "lobby"
			if err := mallory.SendRaw(rawFrame(t, tt.join)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, mallory, "joined", func(v *client.View) bool { return v.User != "" && v.Entities != nil })
			j := mallory.View()
			if j.User == "ada" || j.Token == "" {
				t.Fatalf("joined as %q with token %q: want a user of its own and a token for it", j.User, j.Token)
			}
			claims, err := VerifyToken(ts.joinSecret, j.Token, time.Now())
			if err != nil || claims.Room != "lobby" || claims.User != j.User {
				t.Fatalf("the token handed back grants %+v (%v), want %s in lobby", claims, err, j.User)
			}
			if ttl := time.Until(time.Unix(claims.Expires, 0)); ttl < devTokenTTL-time.Minute || ttl > devTokenTTL {
				t.Errorf("the token handed back lasts %v, want %v", ttl, devTokenTTL)
			}
			if err := mallory.SendPose(pose(8, 5, 1.6, 5)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, watcher, "the newcomer's pose", func(v *client.View) bool { return v.Poses[j.User].Time == 8 })
			v := watcher.View()
			if metas := v.Presence["ada"]; len(metas) != 1 || v.Poses["ada"].Time != 7 {
				t.Errorf("ada has %d metas and pose %+v, want 1 and the one she sent", len(metas), v.Poses["ada"])
			}

			// The token it was handed joins a second device as the same user.
			second := dial(t, ts)
			j2, err := second.Join(testContext(t), codec.Join{Room: "lobby", Token: j.Token})
			if err != nil {
				t.Fatal(err)
			}
			if j2.User != j.User {
				t.Errorf("the second device joined as %q, want %q", j2.User, j.User)
			}
			waitFor(t, watcher, "the newcomer on two devices", func(v *client.View) bool { return len(v.Presence[j.User]) == 2 })
		})
	}
}

func TestAFlooderIsThrottledThenClosedWhileTheRoomGoesOn(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) {
		c.PoseRate = 100
		c.MessageRate = 20
		c.RateGrace = time.Second
	})
	watcher, _ := join(t, ts, "lobby", "watcher")
	mover, _ := join(t, ts, "lobby", "mover")
	flooder, _ := join(t, ts, "lobby", "flooder")

	ctx, cancel := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	flood.Go(func() { // poses at about 50 times the limit
		for i := uint32(0); ctx.Err() == nil; i++ {
			flooder.SendPose(pose(i, float64(i%100), 1, 1))
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	flood.Go(func() { // control messages as fast as the stream takes them
		for ctx.Err() == nil {
			if flooder.Send(&codec.Ping{}) != nil {
				return
			}
		}
	})
	// Meanwhile the mover walks, and the watcher must keep seeing it.
	start := watcher.View().PoseUpdates
	for step := uint32(1); step <= 40; step++ {
		if err := mover.SendPose(pose(step, float64(step), 1.6, 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	waitFor(t, watcher, "the mover's last pose", func(v *client.View) bool { return v.Poses["mover"].Time == 40 })
	waitFor(t, flooder, "the flooder's goodbye", func(v *client.View) bool { return v.Goodbye != nil })
	cancel()
	flood.Wait()
	if g := flooder.View().Goodbye; g.Code != codec.CodeRateLimited {
		t.Errorf("flooder told %+v, want %s", g, codec.CodeRateLimited)
	}
	// A loose sanity bound: in the second of walking the 50 ms tick ran
	// about 20 times; the watcher got most of those updates.
	if got := watcher.View().PoseUpdates - start; got < 10 {
		t.Errorf("the watcher got %d pose updates while the flood went on", got)
	}
	waitUntil(t, "the flooder's close counted", func() bool { return ts.disconnected(CloseRateLimited) == 1 })
	if testutil.ToFloat64(ts.metrics.rejPoseRate) == 0 {
		t.Error("no datagram counted over the rate")
	}
	metrics := scrape(t, ts)
	for _, want := range []string{`posecast_rejected_total{reason="pose_rate"}`, `posecast_disconnects_total{reason="rate_limited"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestASlowConsumerIsClosedAndTheRoomGoesOn(t *testing.T) {
	ts := startServer(t, func(c *Config, rc *rooms.Config) {
		c.MaxBacklog = 256 << 10
		c.MessageRate, c.EventRate = 1000, 1000
		rc.MemberBytes, rc.RoomBytes = 1<<30, 1<<30 // a room that lets one member talk that much
	})
	watcher, _ := join(t, ts, "lobby", "watcher")
	talker, _ := join(t, ts, "lobby", "talker")

	// The slow one joins and never reads again.
	slow := dialRaw(t, ts)
	for _, m := range []codec.Message{&codec.Hello{Version: codec.Version}, &codec.Join{Room: "lobby", Token: token(t, ts, "lobby", "slow")}} {
		f, err := codec.EncodeFrame(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := slow.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, watcher, "the slow one present", func(v *client.View) bool { return v.Presence["slow"] != nil })

	// The talker's events fill the slow one's QUIC window, then its backlog.
	var slowSession *session
	waitUntil(t, "the slow one's session", func() bool {
		slowSession = ts.sessionOf("slow")
		return slowSession != nil
	})
	blob := strings.Repeat("x", 30<<10)
	peak := 0
	for i := 0; ts.disconnected(CloseSlowConsumer) == 0; i++ {
		if i > 400 {
			t.Fatal("12 MB of events and the slow consumer is still open")
		}
		if err := talker.Publish(testContext(t), "chatter", blob); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, slowSession.fq.pendingBytes())
		time.Sleep(2 * time.Millisecond) // the honest readers keep up
	}
	if v := watcher.View(); v.Closed {
		t.Fatal("the watcher, who reads, was closed too")
	}
	// Memory stays bounded: what waits for the slow one never passes its
	// backlog bound (plus the frame that did not fit).
	if peak > 256<<10+64<<10 {
		t.Errorf("%d control bytes queued at the peak, bound 256 KiB", peak)
	}
	waitFor(t, watcher, "the slow one gone", func(v *client.View) bool { return v.Presence["slow"] == nil })
	roomGoesOn(t, talker, watcher, 31)
	if p := ts.pendingBytes(); p > 1<<20 {
		t.Errorf("%d control bytes still queued after the slow consumer left", p)
	}
	// What the slow one's queue held left the node's count with it.
	waitUntil(t, "the node's backlog back to what its sessions hold", func() bool {
		return ts.backlog.total.Load() == int64(ts.pendingBytes())
	})
}

// sessionOf returns the session joined as user, or nil.
func (ts *testServer) sessionOf(user string) *session {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for ss := range ts.sessions {
		if m := ss.membership.Load(); m != nil && m.User() == user {
			return ss
		}
	}
	return nil
}

// In development mode this machine opens as many sessions as it likes: local
// load tests (posebot) are what it is for.
func TestThisMachineIsNotBoundedInDevelopmentMode(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.MaxSessionsPerIP = 2 })
	for i := range 4 {
		c, _ := join(t, ts, "lobby", fmt.Sprintf("u%d", i))
		defer c.Close()
	}
}

func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	_, b := httpGet(t, ts.HTTPURL()+"/metrics")
	return string(b)
}

func TestConnectionsFromOneAddressAreBoundedAndIdleOnesClosed(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) {
		c.MaxSessionsPerIP = 2
		c.HelloTimeout = 500 * time.Millisecond
		c.AuthSecret = []byte("a secret: no development mode, where this machine is not bounded")
	})
	ctx := testContext(t)
	// Two bare QUIC connections that never open a session hold the
	// address's two places, until the hello deadline closes them.
	var bare []*quic.Conn
	for range 2 {
		conn, err := quic.DialAddr(ctx, ts.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		bare = append(bare, conn)
	}
	current, _ := ts.certs.Hashes()
	if c, err := client.Dial(ctx, client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}}); err == nil {
		c.Close()
		t.Fatal("a third connection from one address was let in")
	}
	for _, conn := range bare {
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
			t.Fatal("a connection without a session outlived the hello deadline")
		}
	}
	c, err := client.Dial(ctx, client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}})
	if err != nil {
		t.Fatalf("a connection once the idle ones were closed: %v", err)
	}
	c.Close()
}

func TestShutdownDoesNotWaitForSessionsWithoutAStream(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.HelloTimeout = time.Minute })
	d := &webtransport.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}}
	_, sess, err := d.Dial(testContext(t), ts.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	waitUntil(t, "the session", func() bool { return ts.Sessions() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a session that never opened its stream: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("shutdown used up its whole budget")
	}
}

func TestMalformedMessagesCountAgainstTheMessageRate(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) {
		c.MessageRate = 20
		c.RateGrace = time.Second
	})
	c, _ := join(t, ts, "lobby", "ada")
	garbage := []byte{0, 0, 0, 2, 0xc1, 0xc1}
	for i := 0; ; i++ {
		if c.SendRaw(garbage) != nil || c.View().Goodbye != nil {
			break
		}
		if i > 100000 {
			t.Fatal("100 000 malformed messages and the session is still open")
		}
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(t, c, "the goodbye", func(v *client.View) bool { return v.Goodbye != nil })
	if g := c.View().Goodbye; g.Code != codec.CodeRateLimited {
		t.Errorf("goodbye %+v, want %s", g, codec.CodeRateLimited)
	}
	if n := len(c.View().Errors); n > 200 {
		t.Errorf("%d error answers to a flood of garbage; the limit is 20 a second", n)
	}
}

func TestANodeFullOfSessionsRefusesMoreSayingWhy(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.MaxSessions = 2 })
	dial(t, ts)
	dial(t, ts)
	current, _ := ts.certs.Hashes()
	c, err := client.Dial(testContext(t), client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}})
	if err == nil {
		c.Close()
		t.Fatal("a third session on a node of two was let in")
	}
	if !strings.Contains(err.Error(), "--max-sessions") {
		t.Errorf("refused with %v, which does not say why", err)
	}
}

// readToEnd reads from c until it is closed, or fails the test after a
// while.
func readToEnd(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// A server that closes while bytes it did not read wait makes the
	// kernel reset the connection: closed all the same.
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s was not closed: %v", what, err)
	}
}

func TestAnHTTPRequestThatTricklesIsCut(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.HTTPTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", ts.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 100 ms: it would take 100 s
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	readToEnd(t, c, "a trickling request")
}

func TestHTTPConnectionsFromOneAddressAreBounded(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.MaxHTTPConnsPerIP = 3 })
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ts.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", ts.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	readToEnd(t, extra, "a connection past the address's bound")
	for _, c := range held {
		c.Close()
	}
	waitUntil(t, "/healthz once the held connections closed", func() bool {
		r, err := http.Get(ts.HTTPURL() + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	m := scrape(t, ts)
	if !strings.Contains(m, `posecast_rejected_total{reason="http_connections_per_ip"}`) {
		t.Error("the refused connection is not counted")
	}
}

func TestMembersSendingTheirAllowanceAtOnceEvictNoOne(t *testing.T) {
	// As the attack went: four members each spend a second's worth of room
	// operations at once on 60 KB events. The cost falls on them (refused
	// past their budget and the room's), not on five honest members, who
	// stay, read what came, and go on.
	ts := startServer(t)
	var honest []*client.Client
	for i := range 5 {
		c, _ := join(t, ts, "lobby", fmt.Sprint("honest", i))
		honest = append(honest, c)
	}
	blob := strings.Repeat("x", 60<<10)
	var senders []*client.Client
	for i := range 4 {
		sender, _ := join(t, ts, "lobby", fmt.Sprint("sender", i))
		senders = append(senders, sender)
	}
	before := make([]uint64, len(honest))
	for i, c := range honest {
		waitFor(t, c, "the senders present", func(v *client.View) bool { return len(v.Presence) == 9 })
		before[i] = c.Traffic().BytesReceived
	}
	start := time.Now()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, sender := range senders {
		wg.Go(func() {
			var inner sync.WaitGroup
			for range 19 {
				inner.Go(func() {
					var rerr *client.RequestError
					if err := sender.Publish(testContext(t), "blob", blob); errors.As(err, &rerr) && rerr.Code == codec.CodeRateLimited {
						refused.Add(1)
					}
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	if refused.Load() == 0 {
		t.Error("76 events of 60 KB at once, and none refused")
	}
	// What reached each honest member, and so what could have waited for
	// it on a link slower than loopback, is the room's burst (1 MiB) and
	// its rate (256 KiB/s) for the time it took, not the 4.6 MB sent.
	bound := uint64(1<<20 + time.Since(start).Seconds()*(256<<10) + 256<<10)
	for i, c := range honest {
		if got := c.Traffic().BytesReceived - before[i]; got > bound {
			t.Errorf("honest member %d was sent %d bytes in the burst, bound %d", i, got, bound)
		}
	}
	if n := ts.disconnected(CloseSlowConsumer); n != 0 {
		t.Errorf("%v members closed as slow consumers", n)
	}
	for i, c := range honest {
		if c.View().Closed {
			t.Errorf("honest member %d was closed", i)
		}
		if err := c.Publish(testContext(t), "still_here", nil); err != nil {
			t.Errorf("honest member %d after the burst: %v", i, err)
		}
	}
	// The budget refills: a sender may speak again a little later.
	time.Sleep(time.Second)
	for i, c := range honest {
		if _, err := c.Request(testContext(t), &codec.Ping{}); err != nil {
			t.Errorf("honest member %d: %v", i, err)
		}
	}
}

func TestClientsProveTheirAddressWhenHandshakesComeFast(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.RetryAbove = -1 })
	a, _ := join(t, ts, "lobby", "ada")
	b, _ := join(t, ts, "lobby", "bob")
	if err := a.SendPose(pose(3, 1, 1.7, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "ada's pose", func(v *client.View) bool { return v.Poses["ada"].Time == 3 })
	if n := testutil.ToFloat64(ts.metrics.retries); n < 2 {
		t.Errorf("%v connections went through a Retry, want both", n)
	}
}

func TestNewRoomsFromOneAddressAreBounded(t *testing.T) {
	secret := []byte("rooms secret")
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.AuthSecret, c.NewRoomRate = secret, 1 })
	ctx := testContext(t)
	c := dial(t, ts)
	tok := func(room string) string {
		s, err := SignToken(secret, Claims{Room: room, User: "ada", Expires: time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	started := 0
	var rerr *client.RequestError
	for i := range 15 {
		room := fmt.Sprint("room", i)
		if _, err := c.Join(ctx, codec.Join{Room: room, Token: tok(room)}); err != nil {
			if !errors.As(err, &rerr) || rerr.Code != codec.CodeRateLimited {
				t.Fatalf("join %d: %v", i, err)
			}
			break
		}
		started++
		if err := c.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond) // within the join limit
	}
	if started < 10 || started > 12 {
		t.Errorf("%d new rooms started before the bound, want the burst of 10 (and what refilled)", started)
	}
	// A room that runs is joined as ever.
	if _, err := c.Join(ctx, codec.Join{Room: "room0", Token: tok("room0")}); err != nil {
		t.Errorf("joining a live room after the bound: %v", err)
	}
	// The rooms API counts against the same bound.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.HTTPURL()+"/api/rooms", strings.NewReader(`{"name": "one more"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+APIToken(secret))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("POST /api/rooms past the bound: %d, want 429", r.StatusCode)
	}
}
