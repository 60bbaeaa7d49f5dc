package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// servedCertificate returns the leaf certificate the QUIC listener presents.
func servedCertificate(t *testing.T, ts *testServer) *x509.Certificate {
	t.Helper()
	conn, err := quic.DialAddr(testContext(t), ts.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	return conn.ConnectionState().TLS.PeerCertificates[0]
}

func TestTheServedCertificateIsOneChromeAccepts(t *testing.T) {
	ts := startServer(t)
	leaf := servedCertificate(t, ts)
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v > 14*24*time.Hour {
		t.Errorf("valid for %v, want at most 14 days", v)
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		t.Errorf("not valid now: %v..%v", leaf.NotBefore, leaf.NotAfter)
	}
}

func TestTheHashEndpointMatchesTheListener(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	resp, hashes, err := client.FetchCertHash(ctx, ts.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	if resp.URL != ts.URL() {
		t.Errorf("url %q, want %q", resp.URL, ts.URL())
	}
	if resp.Next == nil || resp.Next.Hex == resp.Current.Hex {
		t.Errorf("next hash %+v, want one distinct from current", resp.Next)
	}
	if got := certs.HashOf(servedCertificate(t, ts).Raw); got != hashes[0] {
		t.Errorf("listener serves %s, endpoint says %s", got.Hex(), hashes[0].Hex())
	}
	// A client that trusts the endpoint's hashes connects; one with a wrong
	// hash does not.
	c, err := client.Dial(ctx, client.Config{URL: resp.URL, CertHashes: hashes})
	if err != nil {
		t.Fatalf("dial with the endpoint's hashes: %v", err)
	}
	c.Close()
	if c, err := client.Dial(ctx, client.Config{URL: resp.URL, CertHashes: []certs.Hash{{1, 2, 3}}}); err == nil {
		c.Close()
		t.Fatal("dial with a wrong hash succeeded")
	}
}

func TestTheHashEndpointNamesTheHostItWasAskedOn(t *testing.T) {
	ts := startServer(t)
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, ts.HTTPURL()+"/cert-hash", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "192.168.1.20:8080" // as a headset on the LAN asks
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	n, _ := r.Body.Read(buf)
	body.Write(buf[:n])
	if !strings.Contains(body.String(), `"url":"https://192.168.1.20:`) {
		t.Errorf("cert-hash for a LAN host: %s", body.String())
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("cert-hash is not readable from other origins")
	}
}

func TestRotationHandsOutTheNextCertificateAndKeepsSessions(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	before, hashes, err := client.FetchCertHash(ctx, ts.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := join(t, ts, "lobby", "old", func(c *client.Config) { c.CertHashes = hashes[:1] })

	if err := ts.certs.Rotate(); err != nil {
		t.Fatal(err)
	}
	after, hashes, err := client.FetchCertHash(ctx, ts.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	if after.Current.Hex != before.Next.Hex {
		t.Errorf("current after rotation %s, want the previous next %s", after.Current.Hex, before.Next.Hex)
	}
	if got := certs.HashOf(servedCertificate(t, ts).Raw); got.Hex() != after.Current.Hex {
		t.Errorf("listener serves %s after rotation, want %s", got.Hex(), after.Current.Hex)
	}
	// A new session trusting only the new certificate connects...
	newer, _ := join(t, ts, "lobby", "new", func(c *client.Config) { c.CertHashes = hashes[:1] })
	// ...and the old session lives on.
	if _, err := old.Request(ctx, &codec.Ping{}); err != nil {
		t.Fatalf("the old session after rotation: %v", err)
	}
	roomGoesOn(t, old, newer, 11)
	roomGoesOn(t, newer, old, 12)
}

func TestHealthz(t *testing.T) {
	ts := startServer(t)
	r, err := http.Get(ts.HTTPURL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("healthz: %s", r.Status)
	}
}

func TestTheHashEndpointListsTheOtherAddresses(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.Listen = ":0" })
	resp, _, err := client.FetchCertHash(testContext(t), ts.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			want = append(want, ts.urlFor(n.IP.String()))
		}
	}
	if !slices.Equal(resp.Alternates, want) {
		t.Errorf("alternates %v, want %v", resp.Alternates, want)
	}
}
