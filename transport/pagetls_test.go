package transport

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/certs"
)

// get fetches url with client and returns the body.
func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q", url, resp.Status, body)
	}
	return string(body)
}

func TestTheHTTPAddressServesHTTPSWithTheServersCertificate(t *testing.T) {
	ts := startServer(t)
	addr := ts.HTTPAddr().String()
	current, _ := ts.certs.Hashes()
	var served certs.Hash
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // checked by hash below, as a browser that accepted the certificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			served = certs.HashOf(raw[0])
			return nil
		},
	}}
	defer tr.CloseIdleConnections()
	https := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if body := get(t, https, "https://"+addr+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("https /healthz = %q", body)
	}
	if served != current {
		t.Errorf("HTTPS served a certificate with hash %s, want the QUIC listener's %s", served.Hex(), current.Hex())
	}
	// /cert-hash asked over HTTPS names the host it was asked on.
	if body := get(t, https, "https://localhost:"+portOf(addr)+"/cert-hash"); !strings.Contains(body, `"url":"https://localhost:`) {
		t.Errorf("https /cert-hash = %s", body)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if body := get(t, plain, "http://"+addr+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("http /healthz = %q", body)
	}
}

func TestASilentConnectionDoesNotHoldUpOthers(t *testing.T) {
	ts := startServer(t)
	addr := ts.HTTPAddr().String()
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if body := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q", body)
	}
}

func TestATLSHandshakeThatFailsClosesOnlyItsConnection(t *testing.T) {
	ts := startServer(t)
	addr := ts.HTTPAddr().String()
	// TLS 1.2 only: the server wants 1.3, as QUIC does.
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	if body := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q", body)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
