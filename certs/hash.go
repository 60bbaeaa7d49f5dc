package certs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// Hash is the SHA-256 of a certificate's DER bytes, as WebTransport's
// serverCertificateHashes wants it.
type Hash [32]byte

// HashOf returns the Hash of a DER-encoded certificate.
func HashOf(der []byte) Hash {
	return sha256.Sum256(der)
}

// Hex returns h as lower-case hex.
func (h Hash) Hex() string {
	return hex.EncodeToString(h[:])
}

// Base64 returns h in standard base64 with padding.
func (h Hash) Base64() string {
	return base64.StdEncoding.EncodeToString(h[:])
}

// String returns h as lower-case hex, so logs print it readably.
func (h Hash) String() string {
	return h.Hex()
}

// IsZero reports whether h is the zero Hash, which stands for no certificate.
func (h Hash) IsZero() bool {
	return h == Hash{}
}
