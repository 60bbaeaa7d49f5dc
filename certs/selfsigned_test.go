package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

func TestSelfSignedCertificate(t *testing.T) {
	now := time.Date(2030, 5, 1, 12, 30, 15, 987654321, time.UTC)
	tests := []struct {
		name         string
		validity     time.Duration
		wantValidity time.Duration
		wantBackdate time.Duration
	}{
		{"the default lasts 13 days from an hour ago", 0, 13 * day, time.Hour},
		{"the longest Chrome accepts lasts exactly 14 days", 14 * day, 14 * day, time.Hour},
		{"a validity of a few seconds is backdated by half the margin", 3 * time.Second, 3 * time.Second, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewSelfSigned(SelfSignedConfig{
				Validity: tt.validity,
				Now:      func() time.Time { return now },
			})
			if err != nil {
				t.Fatalf("NewSelfSigned: %v", err)
			}
			c, err := m.GetCertificate(nil)
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				t.Fatalf("parse served certificate: %v", err)
			}

			pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key is %T %v, want ECDSA P-256", leaf.PublicKey, pub)
			}
			if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("private key is %T, want *ecdsa.PrivateKey", c.PrivateKey)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tt.wantValidity || got > MaxValidity {
				t.Errorf("NotAfter - NotBefore = %v, want %v (at most %v)", got, tt.wantValidity, MaxValidity)
			}
			if got, want := leaf.NotBefore, now.Add(-tt.wantBackdate).Truncate(time.Second); !got.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", got, want)
			}
			if !slices.Contains(leaf.DNSNames, "localhost") {
				t.Errorf("DNSNames = %v, want localhost among them", leaf.DNSNames)
			}
			if !slices.ContainsFunc(leaf.IPAddresses, net.IPv4(127, 0, 0, 1).Equal) {
				t.Errorf("IPAddresses = %v, want 127.0.0.1 among them", leaf.IPAddresses)
			}
			if got, want := leaf.Subject.CommonName, "posecast"; got != want {
				t.Errorf("CommonName = %q, want %q", got, want)
			}
			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v, want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
			}
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want DigitalSignature", leaf.KeyUsage)
			}
			if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("ExtKeyUsage = %v, want ServerAuth", leaf.ExtKeyUsage)
			}
			if n := leaf.SerialNumber; n.Sign() <= 0 || n.BitLen() > 129 {
				t.Errorf("serial number %v, want positive and about 128 bits", n)
			}
			if c.Leaf == nil || !c.Leaf.Equal(leaf) {
				t.Errorf("Leaf is not the served certificate")
			}

			cur, next := m.Hashes()
			if want := Hash(sha256.Sum256(c.Certificate[0])); cur != want {
				t.Errorf("current hash %v, want SHA-256 of the served DER %v", cur, want)
			}
			if next.IsZero() || next == cur {
				t.Errorf("next hash %v, want non-zero and not the current %v", next, cur)
			}

			info := m.Current()
			if info.Hash != cur || info.KeyType != "ECDSA P-256" || !info.SelfSigned || info.Validity() != tt.wantValidity {
				t.Errorf("Current() = %+v, want hash %v, ECDSA P-256, self-signed, validity %v", info, cur, tt.wantValidity)
			}
		})
	}
}

func TestSelfSignedConfig(t *testing.T) {
	tests := []struct {
		name         string
		cfg          SelfSignedConfig
		wantErr      error
		wantValidity time.Duration
		wantEvery    time.Duration
		wantBackdate time.Duration
	}{
		{
			name:         "zero values mean 13 days rotated every 6 days",
			wantValidity: 13 * day, wantEvery: 6 * day, wantBackdate: time.Hour,
		},
		{
			name:         "14 days is accepted and rotated every 6.5 days",
			cfg:          SelfSignedConfig{Validity: 14 * day},
			wantValidity: 14 * day, wantEvery: 6*day + 12*time.Hour, wantBackdate: time.Hour,
		},
		{
			name:    "15 days is refused",
			cfg:     SelfSignedConfig{Validity: 15 * day},
			wantErr: ErrValidityTooLong,
		},
		{
			name:    "14 days and a second is refused",
			cfg:     SelfSignedConfig{Validity: 14*day + time.Second},
			wantErr: ErrValidityTooLong,
		},
		{
			name:    "a rotation period of half the validity is refused",
			cfg:     SelfSignedConfig{Validity: 12 * day, RotateEvery: 6 * day},
			wantErr: ErrNoRotationMargin,
		},
		{
			name:    "a rotation period longer than the validity is refused",
			cfg:     SelfSignedConfig{RotateEvery: 20 * day},
			wantErr: ErrNoRotationMargin,
		},
		{
			name:         "a rotation period just under half the validity is accepted",
			cfg:          SelfSignedConfig{RotateEvery: 6*day + 11*time.Hour},
			wantValidity: 13 * day, wantEvery: 6*day + 11*time.Hour, wantBackdate: time.Hour,
		},
		{
			name:         "3 seconds rotated every second is accepted",
			cfg:          SelfSignedConfig{Validity: 3 * time.Second, RotateEvery: time.Second},
			wantValidity: 3 * time.Second, wantEvery: time.Second, wantBackdate: 500 * time.Millisecond,
		},
		{
			name:         "3 seconds is rotated every second by default",
			cfg:          SelfSignedConfig{Validity: 3 * time.Second},
			wantValidity: 3 * time.Second, wantEvery: time.Second, wantBackdate: 500 * time.Millisecond,
		},
		{
			name:         "2 days is rotated every 16 hours by default",
			cfg:          SelfSignedConfig{Validity: 2 * day},
			wantValidity: 2 * day, wantEvery: 16 * time.Hour, wantBackdate: time.Hour,
		},
		{
			name:         "a validity in fractions of a second is rounded down",
			cfg:          SelfSignedConfig{Validity: 10*time.Second + 700*time.Millisecond, RotateEvery: 4 * time.Second},
			wantValidity: 10 * time.Second, wantEvery: 4 * time.Second, wantBackdate: time.Second,
		},
		{
			name:    "a negative validity is refused",
			cfg:     SelfSignedConfig{Validity: -day},
			wantErr: ErrDurationTooShort,
		},
		{
			name:    "a validity under a second is refused",
			cfg:     SelfSignedConfig{Validity: 999 * time.Millisecond},
			wantErr: ErrDurationTooShort,
		},
		{
			name:    "a negative rotation period is refused",
			cfg:     SelfSignedConfig{RotateEvery: -time.Hour},
			wantErr: ErrDurationTooShort,
		},
		{
			name:    "a validity whose default rotation period is under a second is refused",
			cfg:     SelfSignedConfig{Validity: 2 * time.Second},
			wantErr: ErrDurationTooShort,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSelfSigned(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("newSelfSigned() error = %v, want %v", err, tt.wantErr)
			}
			if _, err := NewSelfSigned(tt.cfg); !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewSelfSigned() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if s.validity != tt.wantValidity || s.sched.every != tt.wantEvery || s.sched.backdate != tt.wantBackdate {
				t.Errorf("validity, every, backdate = %v, %v, %v, want %v, %v, %v",
					s.validity, s.sched.every, s.sched.backdate, tt.wantValidity, tt.wantEvery, tt.wantBackdate)
			}
			if s.now == nil {
				t.Errorf("now is nil, want time.Now")
			}
		})
	}
}

func TestSplitHosts(t *testing.T) {
	dns, ips := splitHosts([]string{"localhost", "", "127.0.0.1", "::1", "pose.example", "localhost", "127.0.0.1", "192.168.1.20"})
	if want := []string{"localhost", "pose.example"}; !slices.Equal(dns, want) {
		t.Errorf("DNS names = %v, want %v", dns, want)
	}
	want := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("192.168.1.20")}
	if !slices.EqualFunc(ips, want, net.IP.Equal) {
		t.Errorf("IPs = %v, want %v", ips, want)
	}
}

func TestDefaultHosts(t *testing.T) {
	hosts := defaultHosts()
	for _, want := range []string{"localhost", "127.0.0.1", "::1"} {
		if !slices.Contains(hosts, want) {
			t.Errorf("defaultHosts() = %v, want %q among them", hosts, want)
		}
	}
}

func TestConfiguredHosts(t *testing.T) {
	m, err := NewSelfSigned(SelfSignedConfig{Hosts: []string{"pose.example", "10.1.2.3"}})
	if err != nil {
		t.Fatalf("NewSelfSigned: %v", err)
	}
	info := m.Current()
	if want := []string{"pose.example"}; !slices.Equal(info.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", info.DNSNames, want)
	}
	if want := []net.IP{net.ParseIP("10.1.2.3")}; !slices.EqualFunc(info.IPs, want, net.IP.Equal) {
		t.Errorf("IPs = %v, want %v", info.IPs, want)
	}
}
