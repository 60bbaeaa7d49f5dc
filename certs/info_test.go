package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"math/big"
	"net"
	"testing"
	"time"
)

func TestKeyType(t *testing.T) {
	n2048 := new(big.Int).Lsh(big.NewInt(1), 2047)
	tests := []struct {
		name string
		pub  any
		want string
	}{
		{"an ECDSA P-256 key names its curve", &ecdsa.PublicKey{Curve: elliptic.P256()}, "ECDSA P-256"},
		{"an ECDSA P-384 key names its curve", &ecdsa.PublicKey{Curve: elliptic.P384()}, "ECDSA P-384"},
		{"an RSA key gives its size in bits", &rsa.PublicKey{N: n2048, E: 65537}, "RSA 2048"},
		{"an Ed25519 key is named", make(ed25519.PublicKey, ed25519.PublicKeySize), "Ed25519"},
		{"an unknown key gives its Go type", "not a key", "string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyType(tt.pub); got != tt.want {
				t.Errorf("keyType() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInfoValidity(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	i := Info{NotBefore: start, NotAfter: start.Add(13 * 24 * time.Hour)}
	if got, want := i.Validity(), 13*24*time.Hour; got != want {
		t.Errorf("Validity() = %v, want %v", got, want)
	}
}

func TestCurrentSharesNothing(t *testing.T) {
	m := newTestManager(t, SelfSignedConfig{})
	first := m.Current()
	first.DNSNames[0] = "changed.example"
	first.IPs[0][0] = 99
	second := m.Current()
	if second.DNSNames[0] == "changed.example" {
		t.Errorf("changing DNSNames of one Info changed the next one")
	}
	if second.IPs[0].Equal(first.IPs[0]) {
		t.Errorf("changing IPs of one Info changed the next one: %v", second.IPs[0])
	}
	if !second.IPs[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IPs[0] = %v, want 127.0.0.1", second.IPs[0])
	}
}
