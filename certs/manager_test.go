package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// testHosts keeps tests from looking up the machine's interfaces.
var testHosts = []string{"localhost", "127.0.0.1", "::1"}

// newTestManager returns a self-signed Manager for cfg, with testHosts unless
// cfg names hosts.
func newTestManager(t testing.TB, cfg SelfSignedConfig) *Manager {
	t.Helper()
	if cfg.Hosts == nil {
		cfg.Hosts = testHosts
	}
	m, err := NewSelfSigned(cfg)
	if err != nil {
		t.Fatalf("NewSelfSigned: %v", err)
	}
	return m
}

func TestRotate(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	for i := range 3 {
		oldCur, oldNext := m.Hashes()
		if err := m.Rotate(); err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		cur, next := m.Hashes()
		if cur != oldNext {
			t.Errorf("rotation %d: current %v, want the previous next %v", i, cur, oldNext)
		}
		if next.IsZero() || next == oldCur || next == oldNext {
			t.Errorf("rotation %d: next %v, want a new hash", i, next)
		}
		c, _ := m.GetCertificate(nil)
		if got := HashOf(c.Certificate[0]); got != cur {
			t.Errorf("rotation %d: GetCertificate serves %v, want %v", i, got, cur)
		}
		now := time.Now()
		st := m.state.Load()
		if !validAt(st.cur.Leaf, now) || !validAt(st.next.Leaf, now) {
			t.Errorf("rotation %d: current %v..%v and next %v..%v are not both valid at %v",
				i, st.cur.Leaf.NotBefore, st.cur.Leaf.NotAfter, st.next.Leaf.NotBefore, st.next.Leaf.NotAfter, now)
		}
	}
}

func TestRotateAfterLongSuspend(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	m := newTestManager(t, SelfSignedConfig{Now: func() time.Time { return now }})
	oldCur, oldNext := m.Hashes()

	now = now.Add(20 * day)
	if err := m.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	cur, next := m.Hashes()
	if cur == oldCur || cur == oldNext || next == oldNext {
		t.Errorf("after both certificates expired, hashes %v, %v, want both fresh", cur, next)
	}
	if info := m.Current(); now.Before(info.NotBefore) || now.After(info.NotAfter) {
		t.Errorf("current certificate %v..%v is not valid at %v", info.NotBefore, info.NotAfter, now)
	}
}

func TestReloadDoesNothingForSelfSigned(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	cur, next := m.Hashes()
	if err := m.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if gotCur, gotNext := m.Hashes(); gotCur != cur || gotNext != next {
		t.Errorf("Reload changed the hashes")
	}
}

func TestTLSConfig(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	cfg := m.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %x, want TLS 1.3", cfg.MinVersion)
	}
	if len(cfg.NextProtos) != 0 || len(cfg.Certificates) != 0 {
		t.Errorf("NextProtos = %v, %d Certificates, want neither", cfg.NextProtos, len(cfg.Certificates))
	}
	if m.TLSConfig() == cfg {
		t.Errorf("TLSConfig returned the same config twice, want a new one each time")
	}
}

// TestHandshake runs real TLS handshakes on loopback and checks that the
// client sees the hash Hashes reports, before and after a rotation.
func TestHandshake(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	addr := serveTLS(t, m.TLSConfig())

	for i := range 2 {
		want, _ := m.Hashes()
		got, err := handshakeHash(addr)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		if got != want {
			t.Errorf("handshake %d: peer certificate hash %v, want %v", i, got, want)
		}
		if err := m.Rotate(); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
	}
}

// serveTLS listens on loopback with cfg, completes the handshake of every
// connection and closes it. The listener is closed and its goroutine waited
// for on cleanup.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed by cleanup
			}
			// The client sees a failed handshake, which is what it checks.
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshakeHash connects to addr as a browser given serverCertificateHashes
// would: it skips name and chain checks and returns the hash of the peer's
// leaf.
func handshakeHash(addr string) (Hash, error) {
	var got Hash
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no peer certificate")
			}
			got = HashOf(raw[0])
			return nil
		},
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return Hash{}, err
	}
	defer conn.Close()
	if v := conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		return Hash{}, fmt.Errorf("negotiated version %x, want TLS 1.3", v)
	}
	return got, nil
}

// TestRunRotates runs Run in real time with certificates that last seconds.
func TestRunRotates(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{Validity: 3 * time.Second, RotateEvery: time.Second})
	first, _ := m.Hashes()

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Info, 16)
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(i Info) {
			select {
			case changes <- i:
			default:
			}
		})
	}()

	seen := map[Hash]bool{first: true}
	timeout := time.After(10 * time.Second)
	for len(seen) < 3 {
		select {
		case i := <-changes:
			if seen[i.Hash] {
				t.Errorf("onChange repeated certificate %v", i.Hash)
			}
			seen[i.Hash] = true
			if now := time.Now(); now.Before(i.NotBefore) || now.After(i.NotAfter) {
				t.Errorf("onChange got certificate %v..%v, not valid at %v", i.NotBefore, i.NotAfter, now)
			}
		case <-timeout:
			t.Fatalf("saw %d certificates in 10s, want 3", len(seen))
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return after its context was cancelled")
	}
}

// TestRunSchedule runs Run on synctest's fake clock for several periods with
// the default configuration and checks when it rotates.
func TestRunSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		m := newTestManager(t, SelfSignedConfig{})

		type change struct {
			at   time.Time
			info Info
		}
		var (
			mu      sync.Mutex // guards changes
			changes []change
		)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- m.Run(ctx, func(i Info) {
				mu.Lock()
				defer mu.Unlock()
				changes = append(changes, change{time.Now(), i})
			})
		}()

		// Look every hour and check that what is served is valid and that
		// next is what the following rotation serves.
		_, wantNext := m.Hashes()
		for range 20 * 24 {
			time.Sleep(time.Hour)
			synctest.Wait()
			now := time.Now()
			st := m.state.Load()
			if !validAt(st.cur.Leaf, now) || !validAt(st.next.Leaf, now) {
				t.Fatalf("at %v: current or next certificate not valid", now.Sub(start))
			}
			if cur, next := m.Hashes(); next != wantNext {
				if cur != wantNext {
					t.Fatalf("at %v: serving %v, want the announced next %v", now.Sub(start), cur, wantNext)
				}
				wantNext = next
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}

		var got []time.Duration
		for _, c := range changes {
			got = append(got, c.at.Sub(start))
		}
		want := []time.Duration{6 * day, 12 * day, 18 * day}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rotations at %v, want %v", got, want)
		}
	})
}

// TestConcurrentUse has handshakes read the certificate while it rotates;
// the race detector checks it.
func TestConcurrentUse(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, _ := m.GetCertificate(nil)
				if c == nil || c.Leaf == nil {
					t.Error("GetCertificate returned no certificate")
					return
				}
				m.Hashes()
				m.Current()
			}
		})
	}
	for range 20 {
		if err := m.Rotate(); err != nil {
			t.Errorf("Rotate: %v", err)
		}
	}
	cancel()
	wg.Wait()
}

func TestGetCertificateDoesNotAllocate(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	if n := testing.AllocsPerRun(1000, func() { m.GetCertificate(hello) }); n != 0 {
		t.Errorf("GetCertificate allocates %v times, want 0", n)
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	m := newTestManager(b, SelfSignedConfig{})
	hello := &tls.ClientHelloInfo{ServerName: "localhost"}
	b.ReportAllocs()
	for b.Loop() {
		m.GetCertificate(hello)
	}
}
