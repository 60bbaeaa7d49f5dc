package transport

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/rooms"
)

// FuzzVerifyToken feeds VerifyToken the join tokens a client may send, and
// tokens of arbitrary claims signed with the server's secret, so that the
// fuzzer reaches what lies past the signature check. It must never panic,
// must refuse with one of the token errors and no claims, and what it
// accepts must grant valid room and user ids (a join token) or a pattern
// alone (a presence token), not yet expired, that hold for this secret
// alone.
//
// A signature has one spelling, SignToken's, so an accepted token ends in
// it; but an issuer may write its JSON claims in any order and spacing, so
// an accepted token need not sign again to the same string. The claims are
// what round-trip: signed again, they verify to themselves, and SignToken's
// spelling of them is a fixed point.
func FuzzVerifyToken(f *testing.F) {
	secret := []byte("the fuzz secret")
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	token := func(secret []byte, c Claims) string {
		tok, err := SignToken(secret, c)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	valid := token(secret, Claims{Room: "lobby", User: "ada", Name: "Ada", Expires: exp})
	dot := strings.LastIndexByte(valid, '.')
	claims := []byte(`{"room":"lobby","user":"ada","name":"Ada","exp":1800003600}`)
	seeds := []struct {
		token   string
		payload []byte
	}{
		{valid, claims},
		{valid[:dot+5] + "\r\n" + valid[dot+5:], []byte(`{"exp":1800003600,"user":"ada","room":"lobby"}`)},
		{token(secret, Claims{Room: "lobby", User: "ada", Expires: now.Add(-time.Second).Unix()}), []byte(`{"room":"lobby","user":"ada","exp":1800000000}`)},
		{token([]byte("a guess"), Claims{Room: "lobby", User: "ada", Expires: exp}), []byte(`{"room":"bad room","user":"ada","exp":1800003600}`)},
		{valid[:len(valid)-5], []byte(`{"room":"lobby","user":"ada","exp":1e30}`)},
		{valid[:dot], []byte(`{"ROOM":"lobby","user":"ada","user":"eve","exp":1800003600,"x":[]}`)},
		{valid[:dot-2] + "xy" + valid[dot:], []byte("null")},
		{"", nil},
		{"pc1.", []byte("{")},
		{"pc1..", []byte(`{"room":"lobby","user":"ada","exp":"soon"}`)},
		{"pc1.!!.!!", []byte(`{"room":"lobby","user":"` + strings.Repeat("a", 300) + `","exp":1800003600}`)},
		{"hello", []byte{0xff, 0xfe}},
		{token(secret, Claims{Watch: "^lobby:", Expires: exp}), []byte(`{"watch":"^lobby:","user":"ada","exp":1800003600}`)},
		{tokenPrefix + strings.Repeat("A", 3000), []byte(`{"room":"lobby","user":"ada","name":"\ud800\u0000<>","exp":1800003600}`)},
	}
	for _, s := range seeds {
		f.Add(s.token, s.payload)
	}
	f.Fuzz(func(t *testing.T, token string, payload []byte) {
		checkVerifyToken(t, secret, now, token)
		checkVerifyToken(t, secret, now, signPayload(secret, payload))
	})
}

// signPayload returns a token of payload, whatever it holds, signed with
// secret: what an issuer with its own idea of claims could hand out.
func signPayload(secret, payload []byte) string {
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(sign(secret, body))
}

// checkVerifyToken checks what VerifyToken makes of token at now.
func checkVerifyToken(t *testing.T, secret []byte, now time.Time, token string) {
	t.Helper()
	c, err := VerifyToken(secret, token, now)
	if err != nil {
		if c != (Claims{}) {
			t.Fatalf("refused %q (%v) with claims %+v", token, err, c)
		}
		for _, want := range []error{ErrTokenMissing, ErrTokenMalformed, ErrTokenSignature, ErrTokenExpired} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("refused %q with %v, not a token error", token, err)
	}
	join := rooms.ValidID(c.Room) && rooms.ValidID(c.User) && c.Watch == ""
	watch := c.Room == "" && c.User == "" && c.Watch != "" && len(c.Watch) <= rooms.MaxMatchLength
	if !join && !watch {
		t.Fatalf("accepted %q with room %q, user %q and watch %q: neither a join nor a presence token", token, c.Room, c.User, c.Watch)
	}
	if c.Expires <= now.Unix() {
		t.Fatalf("accepted %q, expired at %d, at %d", token, c.Expires, now.Unix())
	}
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 2048 {
		t.Fatalf("accepted %q of %d bytes", token, len(token))
	}
	dot := strings.LastIndexByte(token, '.')
	if body := token[:dot]; token != body+"."+base64.RawURLEncoding.EncodeToString(sign(secret, body)) {
		t.Fatalf("accepted %q, whose signature is not spelled as SignToken spells it", token)
	}
	if _, err := VerifyToken(secret, token, time.Unix(c.Expires, 0)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("%q at its expiry: %v, want %v", token, err, ErrTokenExpired)
	}
	if _, err := VerifyToken([]byte("another secret"), token, now); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("%q with another secret: %v, want %v", token, err, ErrTokenSignature)
	}
	again, err := SignToken(secret, c)
	if err != nil {
		t.Fatalf("claims %+v of %q do not sign: %v", c, token, err)
	}
	c2, err := VerifyToken(secret, again, now)
	if err != nil || c2 != c {
		t.Fatalf("claims %+v signed again as %q verify to %+v, %v", c, again, c2, err)
	}
	if third, err := SignToken(secret, c2); err != nil || third != again {
		t.Fatalf("claims %+v signed twice: %q, then %q (%v)", c, again, third, err)
	}
}
