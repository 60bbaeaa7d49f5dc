package certs

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestHashFormats(t *testing.T) {
	tests := []struct {
		name       string
		hash       Hash
		wantHex    string
		wantBase64 string
		wantZero   bool
	}{
		{
			name:       "the hash of abc is the known SHA-256 test vector",
			hash:       HashOf([]byte("abc")),
			wantHex:    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
			wantBase64: "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
		},
		{
			name:       "the zero hash is all zeros and reports zero",
			hash:       Hash{},
			wantHex:    strings.Repeat("0", 64),
			wantBase64: strings.Repeat("A", 43) + "=",
			wantZero:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.hash.Hex(); got != tt.wantHex {
				t.Errorf("Hex() = %q, want %q", got, tt.wantHex)
			}
			if got := tt.hash.String(); got != tt.wantHex {
				t.Errorf("String() = %q, want %q", got, tt.wantHex)
			}
			if got := tt.hash.Base64(); got != tt.wantBase64 {
				t.Errorf("Base64() = %q, want %q", got, tt.wantBase64)
			}
			if got := tt.hash.IsZero(); got != tt.wantZero {
				t.Errorf("IsZero() = %v, want %v", got, tt.wantZero)
			}
		})
	}
}

func TestHashOfIsSHA256(t *testing.T) {
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	if got, want := HashOf(der), Hash(sha256.Sum256(der)); got != want {
		t.Errorf("HashOf() = %v, want %v", got, want)
	}
}
