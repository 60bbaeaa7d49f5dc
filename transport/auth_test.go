package transport

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func TestTokens(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	good, err := SignToken(secret, Claims{Room: "lobby", User: "ada", Name: "Ada", Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := SignToken(secret, Claims{Room: "lobby", User: "ada", Expires: now.Add(-time.Second).Unix()})
	forged, _ := SignToken([]byte("other"), Claims{Room: "lobby", User: "ada", Expires: now.Add(time.Hour).Unix()})
	dot := strings.LastIndexByte(good, '.')
	tampered := good[:dot-2] + "xy" + good[dot:]
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"a valid token", good, nil},
		{"no token", "", ErrTokenMissing},
		{"an expired token", expired, ErrTokenExpired},
		{"a token signed with another secret", forged, ErrTokenSignature},
		{"a tampered payload", tampered, ErrTokenSignature},
		{"not a token", "hello", ErrTokenMalformed},
		{"a bad signature encoding", good[:dot] + ".!!", ErrTokenSignature},
		{"the signature spelled another way", good[:dot+5] + "\r\n" + good[dot+5:], ErrTokenSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := VerifyToken(secret, tt.token, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyToken = %v, want %v", err, tt.want)
			}
			if err == nil && (c.Room != "lobby" || c.User != "ada" || c.Name != "Ada") {
				t.Errorf("claims %+v", c)
			}
		})
	}
	if _, err := SignToken(secret, Claims{Room: "bad room", User: "ada"}); err == nil {
		t.Error("signed a token for an invalid room id")
	}
}

func TestOrigins(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		dev     bool
		host    string // the request's authority
		origin  string
		want    bool
	}{
		{"a client without an Origin", nil, false, "example.org:4433", "", true},
		{"a listed origin", []string{"https://app.example.com"}, false, "posecast.example.com:4433", "https://app.example.com", true},
		{"a listed origin in another case", []string{"https://App.Example.com"}, false, "posecast.example.com:4433", "https://app.example.com", true},
		{"an unlisted origin", []string{"https://app.example.com"}, false, "posecast.example.com:4433", "https://evil.example", false},
		{"a listed origin with its default port", []string{"https://app.example.com"}, false, "posecast.example.com:4433", "https://app.example.com:443", true},
		{"an origin listed with its default port", []string{"https://app.example.com:443"}, false, "posecast.example.com:4433", "https://app.example.com", true},
		{"a listed origin on another port", []string{"https://app.example.com"}, false, "posecast.example.com:4433", "https://app.example.com:8443", false},
		{"the server's own page", nil, false, "192.168.1.20:4433", "https://192.168.1.20:8080", true},
		{"a page on another port of the server's host", nil, false, "192.168.1.20:4433", "https://192.168.1.20:9999", false},
		{"localhost in development mode", nil, true, "192.168.1.20:4433", "http://localhost:8080", true},
		{"loopback in development mode", nil, true, "192.168.1.20:4433", "http://127.0.0.1:8080", true},
		{"localhost with auth on", nil, false, "192.168.1.20:4433", "http://localhost:8080", false},
		{"anything with a star", []string{"*"}, false, "example.org:4433", "https://evil.example", true},
		{"a garbage origin", nil, true, "example.org:4433", "::::", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := newOriginChecker(tt.allowed, tt.dev, func() string { return "8080" })
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("CONNECT", "https://"+tt.host+Path, nil)
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if got := o.check(r); got != tt.want {
				t.Errorf("check = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := newOriginChecker([]string{"app.example.com"}, false, nil); err == nil {
		t.Error("an origin without a scheme was accepted")
	}
}

func TestSessionsFromOtherOriginsAreRefusedAtTheUpgrade(t *testing.T) {
	tests := []struct {
		name    string
		secret  string
		allowed []string
		origin  string
		ok      bool
	}{
		{"a listed origin", "s", []string{"https://app.example.com"}, "https://app.example.com", true},
		{"an unlisted origin", "s", []string{"https://app.example.com"}, "https://evil.example", false},
		{"localhost with a secret set", "s", []string{"https://app.example.com"}, "http://localhost:5173", false},
		{"localhost in development mode", "", nil, "http://localhost:5173", true},
		{"another site in development mode", "", nil, "https://evil.example", false},
		{"no origin: not a browser", "s", []string{"https://app.example.com"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config, _ *rooms.Config) {
				c.AuthSecret = []byte(tt.secret)
				c.AllowedOrigins = tt.allowed
			})
			current, _ := ts.certs.Hashes()
			c, err := client.Dial(testContext(t), client.Config{URL: ts.URL(), CertHashes: []certs.Hash{current}, Origin: tt.origin})
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("the session opened")
				}
				// The 403 races the close of the connection, which had no
				// other use: the client sees one or the other.
				if msg := err.Error(); !strings.Contains(msg, "403") && !strings.Contains(msg, "session refused") {
					t.Errorf("refused with %v, want 403 Forbidden or the session refused", err)
				}
				waitUntil(t, "the refusal counted", func() bool { return testutil.ToFloat64(ts.metrics.rejected.WithLabelValues(rejectUpgrade)) == 1 })
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}
