package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/posecast/posecast/rooms"
)

// Token errors. A join refused for one of them is answered with the
// unauthorized error code.
var (
	ErrTokenMissing   = errors.New("join token required")
	ErrTokenMalformed = errors.New("join token malformed")
	ErrTokenSignature = errors.New("join token signature invalid")
	ErrTokenExpired   = errors.New("join token expired")
	ErrTokenRoom      = errors.New("join token is for another room")
)

// tokenPrefix versions the token format.
const tokenPrefix = "pc1."

// devTokenTTL is how long a token handed out in development mode lets its
// holder join again as the same user.
const devTokenTTL = 24 * time.Hour

// newUserID makes up a user id for a development-mode join: "u" and 12 hex
// digits.
func newUserID() string {
	var b [6]byte
	rand.Read(b[:])
	return "u" + hex.EncodeToString(b[:])
}

// Claims are what a token grants until it expires: a join token lets one
// user into one room (Room and User); a presence token lets its holder
// watch the presence of the rooms a pattern matches (Watch, with no Room
// or User).
type Claims struct {
	Room string `json:"room,omitempty"`
	User string `json:"user,omitempty"`
	// Name is the display name; empty lets the client choose.
	Name string `json:"name,omitempty"`
	// Watch is the pattern of a presence token: subscribe_presence with
	// exactly this match.
	Watch string `json:"watch,omitempty"`
	// Expires is the token's expiry, Unix seconds.
	Expires int64 `json:"exp"`
}

// valid reports whether c is a join token's claims or a presence token's.
func (c Claims) valid() bool {
	if c.Watch != "" {
		return c.Room == "" && c.User == "" && len(c.Watch) <= rooms.MaxMatchLength
	}
	return rooms.ValidID(c.Room) && rooms.ValidID(c.User)
}

// SignToken returns a join token for c, signed with secret (HMAC-SHA256):
// "pc1." + base64url(JSON claims) + "." + base64url(signature).
func SignToken(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("no secret")
	}
	if !c.valid() {
		return "", fmt.Errorf("token: want a valid room and user (%q, %q), or only a watch pattern of at most %d bytes", c.Room, c.User, rooms.MaxMatchLength)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(sign(secret, body)), nil
}

func sign(secret []byte, body string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// APIToken returns the bearer token of the rooms API of a server with the
// auth secret: derived from it, so that the backend that holds the secret
// can make it, and whoever sees an API call cannot mint join tokens.
func APIToken(secret []byte) string {
	return "pca." + base64.RawURLEncoding.EncodeToString(sign(secret, "posecast rooms API"))
}

// VerifyToken checks a token's signature and expiry and returns its claims.
func VerifyToken(secret []byte, token string, now time.Time) (Claims, error) {
	var c Claims
	if token == "" {
		return c, ErrTokenMissing
	}
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 2048 {
		return c, ErrTokenMalformed
	}
	dot := strings.LastIndexByte(token, '.')
	body, sig := token[:dot], token[dot+1:]
	// The signature must be spelled exactly as SignToken spells it, so that
	// one token has one string.
	if !hmac.Equal([]byte(sig), []byte(base64.RawURLEncoding.EncodeToString(sign(secret, body)))) {
		return c, ErrTokenSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
	if err != nil || json.Unmarshal(payload, &c) != nil || !c.valid() {
		return Claims{}, ErrTokenMalformed
	}
	if now.Unix() >= c.Expires {
		return Claims{}, ErrTokenExpired
	}
	return c, nil
}

// originKey spells an origin one way: scheme and host in lower case, and
// the port only when it is not the scheme's default.
func originKey(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	scheme := strings.ToLower(u.Scheme)
	if port == "" || port == map[string]string{"http": "80", "https": "443"}[scheme] {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}

// originChecker decides which browser pages may open sessions.
type originChecker struct {
	allowed []string // normalized scheme://host[:port]
	any     bool
	dev     bool
	// pagePort returns the port the server serves its pages on.
	pagePort func() string
}

func newOriginChecker(allowed []string, dev bool, pagePort func() string) (*originChecker, error) {
	o := &originChecker{dev: dev, pagePort: pagePort}
	for _, a := range allowed {
		if a == "*" {
			o.any = true
			continue
		}
		u, err := url.Parse(a)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("transport: allowed origin %q is not scheme://host[:port]", a)
		}
		o.allowed = append(o.allowed, originKey(u))
	}
	return o, nil
}

// check reports whether r's Origin may open a session: no Origin (not a
// browser), a listed origin, the server's own page (the host the request
// came to, on the port the server serves its pages on), or in development
// mode a page on localhost.
func (o *originChecker) check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if slices.Contains(o.allowed, originKey(u)) {
		return true
	}
	host := u.Hostname()
	reqHost := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		reqHost = h
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if strings.EqualFold(host, strings.Trim(reqHost, "[]")) && port == o.pagePort() {
		return true
	}
	if o.dev {
		if host == "localhost" {
			return true
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	return false
}
