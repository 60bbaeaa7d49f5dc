package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"
)

// Info describes a certificate, for logs and for deciding how clients may
// trust it.
type Info struct {
	// KeyType is the kind of public key, such as "ECDSA P-256", "RSA 2048"
	// or "Ed25519".
	KeyType string

	// NotBefore and NotAfter bound the certificate's validity.
	NotBefore, NotAfter time.Time

	// Hash is the SHA-256 of the certificate's DER bytes.
	Hash Hash

	// SelfSigned reports whether the certificate is signed by its own key,
	// so that clients can only trust it by its Hash.
	SelfSigned bool

	// DNSNames and IPs are the certificate's subject alternative names.
	DNSNames []string
	IPs      []net.IP
}

// Validity returns the certificate's total validity, NotAfter - NotBefore.
// Chrome's serverCertificateHashes wants it at most MaxValidity.
func (i Info) Validity() time.Duration {
	return i.NotAfter.Sub(i.NotBefore)
}

// clone returns a copy of i that shares no slices with it.
func (i Info) clone() Info {
	i.DNSNames = slices.Clone(i.DNSNames)
	if i.IPs != nil {
		ips := make([]net.IP, len(i.IPs))
		for n, ip := range i.IPs {
			ips[n] = slices.Clone(ip)
		}
		i.IPs = ips
	}
	return i
}

// infoOf describes leaf.
func infoOf(leaf *x509.Certificate) Info {
	return Info{
		KeyType:    keyType(leaf.PublicKey),
		NotBefore:  leaf.NotBefore,
		NotAfter:   leaf.NotAfter,
		Hash:       HashOf(leaf.Raw),
		SelfSigned: leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil,
		DNSNames:   leaf.DNSNames,
		IPs:        leaf.IPAddresses,
	}
}

// keyType names the kind of a public key.
func keyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}
