package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestLoadFiles(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := newCert(t, "test CA", nil, caKey, caKey, true)

	tests := []struct {
		name           string
		chain          [][]byte // leaf first
		key            crypto.Signer
		wantKeyType    string
		wantSelfSigned bool
	}{
		{
			name:           "a self-signed ECDSA certificate",
			chain:          [][]byte{newCert(t, "posecast", nil, ecKey, ecKey, false)},
			key:            ecKey,
			wantKeyType:    "ECDSA P-256",
			wantSelfSigned: true,
		},
		{
			name:           "a self-signed Ed25519 certificate",
			chain:          [][]byte{newCert(t, "posecast", nil, edKey, edKey, false)},
			key:            edKey,
			wantKeyType:    "Ed25519",
			wantSelfSigned: true,
		},
		{
			name:        "a chain signed by a CA",
			chain:       [][]byte{newCert(t, "posecast", ca, ecKey, caKey, false), ca},
			key:         ecKey,
			wantKeyType: "ECDSA P-256",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := writePair(t, t.TempDir(), tt.chain, tt.key, time.Now())
			m, err := LoadFiles(certFile, keyFile)
			if err != nil {
				t.Fatalf("LoadFiles: %v", err)
			}
			leaf, _ := x509.ParseCertificate(tt.chain[0])
			info := m.Current()
			if info.KeyType != tt.wantKeyType || info.SelfSigned != tt.wantSelfSigned {
				t.Errorf("KeyType, SelfSigned = %q, %v, want %q, %v", info.KeyType, info.SelfSigned, tt.wantKeyType, tt.wantSelfSigned)
			}
			if !info.NotBefore.Equal(leaf.NotBefore) || !info.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("validity %v..%v, want %v..%v", info.NotBefore, info.NotAfter, leaf.NotBefore, leaf.NotAfter)
			}
			if !slices.Equal(info.DNSNames, []string{"localhost"}) {
				t.Errorf("DNSNames = %v, want [localhost]", info.DNSNames)
			}
			cur, next := m.Hashes()
			if want := HashOf(tt.chain[0]); cur != want || info.Hash != want {
				t.Errorf("current hash %v, Info hash %v, want %v", cur, info.Hash, want)
			}
			if !next.IsZero() {
				t.Errorf("next hash %v, want zero for files", next)
			}
			c, _ := m.GetCertificate(nil)
			if len(c.Certificate) != len(tt.chain) || c.Leaf == nil {
				t.Errorf("served %d certificates, Leaf %v, want %d and a Leaf", len(c.Certificate), c.Leaf, len(tt.chain))
			}
		})
	}
}

func TestLoadFilesErrors(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certFile, keyFile := writePair(t, dir, [][]byte{newCert(t, "posecast", nil, key, key, false)}, key, time.Now())
	if _, err := LoadFiles(filepath.Join(dir, "missing.pem"), keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFiles with a missing certificate file: error %v, want one that is os.ErrNotExist", err)
	}
	if _, err := LoadFiles(keyFile, certFile); err == nil {
		t.Errorf("LoadFiles with the files swapped: no error")
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Now().Add(-time.Hour)
	first := newKeyedCert(t)
	certFile, keyFile := writePair(t, dir, first.chain, first.key, mtime)
	m, err := LoadFiles(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	assertServes := func(t *testing.T, want []byte) {
		t.Helper()
		cur, _ := m.Hashes()
		c, _ := m.GetCertificate(nil)
		if got := HashOf(c.Certificate[0]); got != HashOf(want) || cur != HashOf(want) {
			t.Errorf("serving %v with hash %v, want %v", got, cur, HashOf(want))
		}
	}

	t.Run("files with unchanged stamps are not read again", func(t *testing.T) {
		// A P-256 key in PKCS #8 always has the same size, so with the same
		// modification time the stamps match; had Reload read the files, the
		// key would not match the certificate.
		writePair(t, dir, first.chain, newKeyedCert(t).key, mtime)
		if err := m.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		assertServes(t, first.chain[0])
		writePair(t, dir, first.chain, first.key, mtime)
	})

	mtime = mtime.Add(time.Minute)
	second := newKeyedCert(t)
	t.Run("changed files are read", func(t *testing.T) {
		writePair(t, dir, second.chain, second.key, mtime)
		if err := m.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		assertServes(t, second.chain[0])
	})

	other := newKeyedCert(t)
	broken := []struct {
		name  string
		write func()
	}{
		{"a certificate file that is not PEM keeps the old pair", func() {
			writeFile(t, certFile, []byte("not a certificate"), mtime)
		}},
		{"a key that does not match the certificate keeps the old pair", func() {
			writePair(t, dir, second.chain, other.key, mtime)
		}},
		{"a missing key file keeps the old pair", func() {
			if err := os.Remove(keyFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			mtime = mtime.Add(time.Minute)
			tt.write()
			for i := range 2 {
				if err := m.Reload(); err == nil {
					t.Errorf("Reload %d: no error", i)
				}
				assertServes(t, second.chain[0])
			}
			// The failed reads recorded no stamps, so the repaired files are
			// read again.
			writePair(t, dir, second.chain, second.key, mtime)
			if err := m.Reload(); err != nil {
				t.Fatalf("Reload after repair: %v", err)
			}
			assertServes(t, second.chain[0])
		})
	}

	t.Run("rotate rereads files that look unchanged", func(t *testing.T) {
		third := newKeyedCert(t)
		writePair(t, dir, third.chain, third.key, mtime)
		if err := m.Rotate(); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		assertServes(t, third.chain[0])
	})
}

func TestRunReloadsFiles(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Now().Add(-time.Hour)
	first := newKeyedCert(t)
	certFile, keyFile := writePair(t, dir, first.chain, first.key, mtime)
	m, err := LoadFiles(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	m.files.every = 5 * time.Millisecond

	ctx, cancel := context.WithCancel(t.Context())
	changes := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(i Info) { changes <- i })
	}()

	// Written in two steps, the way a renewal tool might: Run may read a
	// mismatched pair in between, must keep the old one, and try again.
	second := newKeyedCert(t)
	writeFile(t, certFile, pemCert(second.chain), mtime.Add(time.Minute))
	time.Sleep(20 * time.Millisecond)
	writeFile(t, keyFile, pemKey(t, second.key), mtime.Add(time.Minute))

	select {
	case i := <-changes:
		if want := HashOf(second.chain[0]); i.Hash != want {
			t.Errorf("onChange got %v, want %v", i.Hash, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onChange not called within 5s of the files changing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}

// keyedCert is a certificate chain with the key of its leaf.
type keyedCert struct {
	chain [][]byte
	key   crypto.Signer
}

// newKeyedCert returns a self-signed ECDSA certificate with its key.
func newKeyedCert(t *testing.T) keyedCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyedCert{chain: [][]byte{newCert(t, "posecast", nil, key, key, false)}, key: key}
}

// newCert returns the DER of a certificate for key, signed by signer as
// parent (DER, nil for self-signed).
func newCert(t *testing.T, cn string, parent []byte, key, signer crypto.Signer, isCA bool) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour).Truncate(time.Second),
		NotAfter:              time.Now().Add(24 * time.Hour).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if !isCA {
		tmpl.DNSNames = []string{"localhost"}
	}
	parentCert := tmpl
	if parent != nil {
		p, err := x509.ParseCertificate(parent)
		if err != nil {
			t.Fatal(err)
		}
		parentCert = p
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return der
}

// writePair writes chain and key as cert.pem and key.pem in dir, with
// modification time mtime, and returns their paths.
func writePair(t *testing.T, dir string, chain [][]byte, key crypto.Signer, mtime time.Time) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, pemCert(chain), mtime)
	writeFile(t, keyFile, pemKey(t, key), mtime)
	return certFile, keyFile
}

// writeFile writes data to path and sets its modification time, so tests do
// not depend on the file system's timestamp resolution.
func writeFile(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// pemCert encodes a certificate chain as PEM.
func pemCert(chain [][]byte) []byte {
	var b []byte
	for _, der := range chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

// pemKey encodes a private key as PKCS #8 PEM.
func pemKey(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
