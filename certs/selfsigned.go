package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// MaxValidity is the longest total validity Chrome accepts for a certificate
// given through WebTransport's serverCertificateHashes.
const MaxValidity = 14 * 24 * time.Hour

const (
	defaultValidity = 13 * 24 * time.Hour

	// maxBackdate is how long before its creation a certificate becomes
	// valid, so a client whose clock is a little behind still accepts it.
	maxBackdate = time.Hour
)

// SelfSignedConfig configures NewSelfSigned. The zero value is ready to use.
type SelfSignedConfig struct {
	// Hosts are DNS names and IP addresses put in the certificates' subject
	// alternative names. Defaults to localhost, 127.0.0.1, ::1, the machine's
	// hostname and every address of the machine's up interfaces, so a headset
	// on the LAN can reach the server by IP; the defaults are looked up again
	// for every new certificate. Chrome does not check them for certificates
	// given by hash.
	Hosts []string

	// Validity is each certificate's total lifetime, NotAfter - NotBefore,
	// rounded down to whole seconds. Defaults to 13 days. Values over
	// MaxValidity are an error, because Chrome refuses such certificates, and
	// so are values under a second.
	Validity time.Duration

	// RotateEvery is how long a certificate is served before the next one
	// takes over. A certificate is listed as next for one period and served
	// as current for the next one, so 2*RotateEvery must be shorter than
	// Validity; it must also be at least a second. Defaults to
	// (Validity - 1 day)/2, 6 days for the default Validity, which retires a
	// certificate with about a day of validity left; for a Validity of 3 days
	// or less it defaults to Validity/3.
	RotateEvery time.Duration

	// Now returns the current time. Defaults to time.Now; tests set it.
	Now func() time.Time
}

// selfSigned is a validated SelfSignedConfig with its defaults filled in.
type selfSigned struct {
	hosts    []string // nil means defaultHosts, looked up for every certificate
	validity time.Duration
	sched    schedule
	now      func() time.Time
}

// newSelfSigned fills in cfg's defaults and validates it.
func newSelfSigned(cfg SelfSignedConfig) (*selfSigned, error) {
	s := &selfSigned{
		validity: cfg.Validity.Truncate(time.Second),
		now:      cfg.Now,
	}
	if len(cfg.Hosts) > 0 {
		s.hosts = slices.Clone(cfg.Hosts)
	}
	if cfg.Validity == 0 {
		s.validity = defaultValidity
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case s.validity < time.Second:
		return nil, fmt.Errorf("%w: validity %v", ErrDurationTooShort, cfg.Validity)
	case s.validity > MaxValidity:
		return nil, fmt.Errorf("%w: validity %v", ErrValidityTooLong, cfg.Validity)
	}

	every := cfg.RotateEvery
	if every == 0 {
		margin := min(24*time.Hour, s.validity/3)
		every = (s.validity - margin) / 2
	}
	switch {
	case every < time.Second:
		return nil, fmt.Errorf("%w: rotation period %v", ErrDurationTooShort, every)
	case 2*every >= s.validity:
		return nil, fmt.Errorf("%w: rotation period %v, validity %v", ErrNoRotationMargin, every, s.validity)
	}
	s.sched = schedule{
		every: every,
		// Half the margin at most, so a certificate created late still
		// outlives its time as current; see schedule.
		backdate: min(maxBackdate, (s.validity-2*every)/2),
	}
	return s, nil
}

// generate makes a new certificate that is valid from now - backdate for the
// configured validity.
func (s *selfSigned) generate(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: generate serial number: %w", err)
	}
	serial.Add(serial, big.NewInt(1)) // serial numbers must be positive

	hosts := s.hosts
	if hosts == nil {
		hosts = defaultHosts()
	}
	dnsNames, ips := splitHosts(hosts)

	// Certificates store whole seconds; truncating here keeps NotAfter -
	// NotBefore exactly the validity.
	notBefore := now.Add(-s.sched.backdate).Truncate(time.Second).UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "posecast"},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(s.validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse created certificate: %w", err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// splitHosts sorts hosts into DNS names and IP addresses, dropping empty
// strings and duplicates.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP) {
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if !slices.Contains(dnsNames, h) {
			dnsNames = append(dnsNames, h)
		}
	}
	return dnsNames, ips
}

// defaultHosts returns localhost, the loopback addresses, the machine's
// hostname and the addresses of its up interfaces. Lookups that fail are left
// out: the names are a convenience, Chrome does not check them.
func defaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return hosts
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				hosts = append(hosts, n.IP.String())
			}
		}
	}
	return hosts
}
