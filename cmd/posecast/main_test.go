package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport"
	"github.com/posecast/posecast/transport/client"
)

func TestFlagsComeFromTheEnvironmentUnlessGiven(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantTick time.Duration
		wantErr  bool
	}{
		{"the default", nil, nil, 200 * time.Millisecond, false},
		{"from the environment", map[string]string{"POSECAST_TICK": "100ms"}, nil, 100 * time.Millisecond, false},
		{"the command line wins", map[string]string{"POSECAST_TICK": "100ms"}, []string{"--tick", "50ms"}, 50 * time.Millisecond, false},
		{"a bad environment value is an error", map[string]string{"POSECAST_TICK": "soon"}, nil, 0, true},
		{"--cert without --key is an error", nil, []string{"--cert", "x.pem"}, 0, true},
		{"stray arguments are an error", nil, []string{"serve"}, 0, true},
		{"a datagram limit QUIC cannot carry is an error", nil, []string{"--max-datagram", "1400"}, 0, true},
		{"a datagram limit below the floor is an error", map[string]string{"POSECAST_MAX_DATAGRAM": "500"}, nil, 0, true},
		{"a datagram limit in range", nil, []string{"--max-datagram", "1100"}, 200 * time.Millisecond, false},
		{"a cluster without a database is refused", map[string]string{"DATABASE_URL": ""}, []string{"--nats-url", "nats://127.0.0.1:4222", "--auth-secret", "s"}, 0, true},
		{"a cluster without a secret is refused", nil, []string{"--nats-url", "nats://127.0.0.1:4222", "--database-url", "postgres://a/db"}, 0, true},
		{"a cluster with both", nil, []string{"--nats-url", "nats://127.0.0.1:4222", "--database-url", "postgres://a/db", "--auth-secret", "s"}, 200 * time.Millisecond, false},
		{"--nats-embed is a cluster too", map[string]string{"DATABASE_URL": ""}, []string{"--nats-embed", "--auth-secret", "s"}, 0, true},
		{"interest management may be turned off", nil, []string{"--interest-radius", "0"}, 200 * time.Millisecond, false},
		{"a negative interest radius is an error", nil, []string{"--interest-radius", "-1"}, 0, true},
		{"no nearest is an error", nil, []string{"--interest-nearest", "0"}, 0, true},
		{"a far schedule of no ticks is an error", nil, []string{"--interest-far-every", "0"}, 0, true},
		{"a node id that is not an id", nil, []string{"--nats-url", "nats://x", "--database-url", "postgres://a/db", "--auth-secret", "s", "--node-id", "a b"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			o, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && o.tick != tt.wantTick {
				t.Errorf("tick %v, want %v", o.tick, tt.wantTick)
			}
		})
	}
}

func TestInterestFlags(t *testing.T) {
	tests := []struct {
		args []string
		want rooms.Interest
	}{
		{nil, rooms.Interest{Radius: 5, Nearest: 24, FarEvery: 4, Refresh: 30 * time.Second, FarMove: 0.1, FarTurn: 10}},
		{[]string{"--interest-radius", "0", "--interest-nearest", "3"}, rooms.Interest{Disabled: true}},
		{[]string{"--interest-radius", "8", "--interest-cell", "2", "--interest-far-every", "2", "--interest-refresh", "10s", "--interest-far-move", "0.5", "--interest-far-turn", "30"}, rooms.Interest{Radius: 8, Nearest: 24, FarEvery: 2, Cell: 2, Refresh: 10 * time.Second, FarMove: 0.5, FarTurn: 30}},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if o.interest != tt.want {
			t.Errorf("%q: interest %+v, want %+v", tt.args, o.interest, tt.want)
		}
	}
}

func TestTheDatabaseURLComesFromTheFlagThenTheEnvironment(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"none means the in-memory store", map[string]string{"DATABASE_URL": ""}, nil, ""},
		{"DATABASE_URL is read", map[string]string{"DATABASE_URL": "postgres://a/db"}, nil, "postgres://a/db"},
		{"POSECAST_DATABASE_URL wins over DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://a/db", "POSECAST_DATABASE_URL": "postgres://b/db"}, nil, "postgres://b/db"},
		{"the flag wins over both", map[string]string{"DATABASE_URL": "postgres://a/db", "POSECAST_DATABASE_URL": "postgres://b/db"}, []string{"--database-url", "postgres://c/db"}, "postgres://c/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			o, err := parseFlags(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if o.databaseURL != tt.want {
				t.Errorf("database URL %q, want %q", o.databaseURL, tt.want)
			}
		})
	}
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serving is a posecast run as main runs it, on loopback ports.
type serving struct {
	httpURL string
	done    chan error
}

// serve runs posecast with args and the addresses it picks, and returns
// once it answers /healthz.
func serve(t *testing.T, ctx context.Context, args ...string) *serving {
	t.Helper()
	udp, tcp := freePort(t, "udp"), freePort(t, "tcp")
	s := &serving{httpURL: "http://127.0.0.1:" + strconv.Itoa(tcp), done: make(chan error, 1)}
	args = append([]string{"--listen", "127.0.0.1:" + strconv.Itoa(udp), "--http", "127.0.0.1:" + strconv.Itoa(tcp), "--log-level", "warn", "--tick", "50ms"}, args...)
	go func() { s.done <- run(args) }()
	for {
		r, err := http.Get(s.httpURL + "/healthz")
		if err == nil {
			r.Body.Close()
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("run returned early: %v", err)
		case <-ctx.Done():
			t.Fatal("server never answered /healthz")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends the process SIGTERM, as an operator would, and waits for run
// to return.
func (s *serving) stop(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not return after SIGTERM")
	}
}

// join connects a client as a browser would, by the certificate's hash,
// and joins room. The client is closed when t ends.
func (s *serving) join(t *testing.T, ctx context.Context, room string) *client.Client {
	t.Helper()
	info, hashes, err := client.FetchCertHash(ctx, s.httpURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, client.Config{URL: info.URL, CertHashes: hashes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Join(ctx, codec.Join{Room: room, Name: "tester"}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServeThenStopOnSIGTERM runs the server as main does, joins a room with
// the Go client, and stops it with SIGTERM: the client is told, and run
// returns cleanly.
func TestServeThenStopOnSIGTERM(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // the in-memory store, whatever the tests' database
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := serve(t, ctx)
	c := s.join(t, ctx, "lobby")
	s.stop(t, ctx)
	if g := c.View().Goodbye; g == nil || g.Code != codec.CodeServerShutdown {
		t.Errorf("client was told %+v, want %s", g, codec.CodeServerShutdown)
	}
}

func TestTokenMintsWhatTheServerAccepts(t *testing.T) {
	t.Setenv("POSECAST_AUTH_SECRET", "s3cret")
	var out strings.Builder
	if err := mintToken([]string{"--room", "lobby", "--user", "ada", "--ttl", "10m"}, &out); err != nil {
		t.Fatal(err)
	}
	c, err := transport.VerifyToken([]byte("s3cret"), strings.TrimSpace(out.String()), time.Now())
	if err != nil || c.Room != "lobby" || c.User != "ada" || c.Expires > time.Now().Add(11*time.Minute).Unix() {
		t.Errorf("minted token: %+v, %v", c, err)
	}
	out.Reset()
	if err := mintToken([]string{"--watch", "^lobby:"}, &out); err != nil {
		t.Fatal(err)
	}
	if c, err := transport.VerifyToken([]byte("s3cret"), strings.TrimSpace(out.String()), time.Now()); err != nil || c.Watch != "^lobby:" || c.Room != "" {
		t.Errorf("minted presence token: %+v, %v", c, err)
	}
	out.Reset()
	if err := mintToken([]string{"--api"}, &out); err != nil || strings.TrimSpace(out.String()) != transport.APIToken([]byte("s3cret")) {
		t.Errorf("posecast token --api = %q, %v", out.String(), err)
	}
	t.Setenv("POSECAST_AUTH_SECRET", "")
	if err := mintToken([]string{"--room", "lobby", "--user", "ada"}, &out); err == nil {
		t.Error("a token minted without a secret")
	}
}

// stderrOf runs f with the process's standard error captured.
func stderrOf(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	f()
	os.Stderr = saved
	w.Close()
	return <-done
}

// --help (of the server and of token) exits well and reads well: every
// flag line names a type or nothing, since the flag package takes a
// back-quoted word in a usage for the argument's name, and the token
// command is mentioned.
func TestHelpIsReadable(t *testing.T) {
	types := map[string]bool{"": true, "string": true, "duration": true, "int": true, "float": true, "value": true}
	for _, args := range [][]string{{"--help"}, {"token", "--help"}} {
		var err error
		out := stderrOf(t, func() { err = run(args) })
		if err != nil {
			t.Errorf("%v: %v", args, err)
		}
		for line := range strings.Lines(out) {
			fields := strings.Fields(line)
			if len(fields) > 0 && strings.HasPrefix(line, "  -") && !types[strings.Join(fields[1:], " ")] {
				t.Errorf("%v: flag line %q names no type", args, strings.TrimSpace(line))
			}
		}
		if args[0] == "--help" && !strings.Contains(out, "posecast token") {
			t.Errorf("--help does not mention posecast token:\n%s", out)
		}
	}
}
