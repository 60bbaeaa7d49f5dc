package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// TestMain fails the package when goroutines of the project or of QUIC
// outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitForGoroutines(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForGoroutines waits for every goroutine of posecast or quic-go to end
// and returns the stacks of those that did not.
func waitForGoroutines(limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "waitForGoroutines") || strings.Contains(g, "testing.(*M)") {
				continue
			}
			if strings.Contains(g, "posecast/posecast") || strings.Contains(g, "quic-go") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLogger discards logs unless POSECAST_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("POSECAST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testServer struct {
	*Server
	registry *rooms.Registry
	certs    *certs.Manager
	store    *rooms.MemoryStore
}

type serverOption func(*Config, *rooms.Config)

// startServer runs a server on loopback ports chosen by the system, with a
// fast tick and an in-memory store, and stops it when the test ends.
func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	store := &rooms.MemoryStore{}
	ts := startServerOn(t, store, opts...)
	ts.store = store
	return ts
}

// startServerOn is startServer with the given store; the test server's
// store field is left nil.
func startServerOn(t testing.TB, store rooms.Store, opts ...serverOption) *testServer {
	t.Helper()
	cm, err := certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger()
	rcfg := rooms.Config{Tick: 50 * time.Millisecond, Logger: log}
	cfg := Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Certs: cm, Logger: log}
	for _, o := range opts {
		o(&cfg, &rcfg)
	}
	reg, err := rooms.NewRegistry(store, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry = reg
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, registry: reg, certs: cm}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		reg.Close()
	})
	return ts
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client to ts, trusting its certificate by hash, and closes
// it when the test ends.
func dial(t *testing.T, ts *testServer, cfg ...func(*client.Config)) *client.Client {
	t.Helper()
	current, _ := ts.certs.Hashes()
	cc := client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}, Name: t.Name()}
	for _, f := range cfg {
		f(&cc)
	}
	c, err := client.Dial(testContext(t), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// token returns a join token for user in room signed with ts's join
// secret: in development mode, what the server hands back in a joined reply
// and a reconnect presents.
func token(t testing.TB, ts *testServer, room, user string) string {
	t.Helper()
	tok, err := SignToken(ts.joinSecret, Claims{Room: room, User: user, Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// marshal encodes v as msgpack, for bodies a client built by hand might
// send, with map keys in order ("ref" before "type"), so that what a test
// sends is the same at every run.
func marshal(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// frameOf puts body, whatever it holds, in a control frame.
func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// rawFrame encodes v as a control frame as it is.
func rawFrame(t testing.TB, v any) []byte { return frameOf(marshal(t, v)) }

// httpGet returns the status and body of a GET of url.
func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r.StatusCode, b
}

// join dials and joins room as user.
func join(t *testing.T, ts *testServer, room, user string, cfg ...func(*client.Config)) (*client.Client, *codec.Joined) {
	t.Helper()
	c := dial(t, ts, cfg...)
	j, err := c.Join(testContext(t), codec.Join{Room: room, Name: "name of " + user, Token: token(t, ts, room, user)})
	if err != nil {
		t.Fatalf("join %s as %s: %v", room, user, err)
	}
	return c, j
}

// pose returns a head pose at (x, y, z) stamped with t.
func pose(t uint32, x, y, z float64) *codec.Pose {
	return &codec.Pose{Time: t, Head: codec.Transform{Position: [3]float64{x, y, z}, Rotation: codec.Identity.Rotation}}
}

// near reports whether a received position is the sent one, within the
// wire's quantization.
func near(got, want [3]float64) bool {
	for i := range 3 {
		if d := got[i] - want[i]; d > codec.PositionUnit || d < -codec.PositionUnit {
			return false
		}
	}
	return true
}

// waitFor waits for cond on c's view, failing the test with what on timeout.
func waitFor(t *testing.T, c *client.Client, what string, cond func(*client.View) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.WaitFor(ctx, cond); err != nil {
		v := c.View()
		t.Fatalf("waiting for %s: %v\nview: room %q user %q presence %v events %d errors %v goodbye %v", what, err, v.Room, v.User, v.Presence, len(v.Events), v.Errors, v.Goodbye)
	}
}

// waitUntil polls cond until it holds, failing the test after a while.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialRaw opens a session and its control stream and says nothing: tests
// speak the protocol by hand on it.
func dialRaw(t *testing.T, ts *testServer) *webtransport.Stream {
	t.Helper()
	ctx := testContext(t)
	d := &webtransport.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}}
	_, sess, err := d.Dial(ctx, ts.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sess.CloseWithError(0, "")
		d.Close()
	})
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

func hasEvent(v *client.View, name, user string) bool {
	for _, e := range v.Events {
		if e.Name == name && e.User == user {
			return true
		}
	}
	return false
}
