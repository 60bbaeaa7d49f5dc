package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// reloadEvery is how often Run looks at certificate files.
const reloadEvery = time.Minute

// fileSource is where a Manager made by LoadFiles reads its pair.
type fileSource struct {
	certFile, keyFile string
	every             time.Duration // how often Run reloads; tests shorten it

	// Guarded by Manager.mu.
	certStamp, keyStamp stamp // of the files the served pair was read from
}

// stamp is what Reload compares to tell that a file has changed.
type stamp struct {
	modTime time.Time
	size    int64
}

// equal reports whether s and o are the same stamp.
func (s stamp) equal(o stamp) bool {
	return s.modTime.Equal(o.modTime) && s.size == o.size
}

// LoadFiles returns a Manager that serves the PEM certificate chain in
// certFile, leaf first, with the PEM private key in keyFile. It does not
// rotate; Reload and Run reread the files when they change on disk.
func LoadFiles(certFile, keyFile string) (*Manager, error) {
	m := &Manager{files: &fileSource{
		certFile: certFile,
		keyFile:  keyFile,
		every:    reloadEvery,
	}}
	if _, err := m.reload(true); err != nil {
		return nil, err
	}
	return m, nil
}

// runFiles is Run for certificate files.
func (m *Manager) runFiles(ctx context.Context, onChange func(Info)) {
	t := time.NewTicker(m.files.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failed reload leaves the served pair alone, and the stamps too,
		// so the next tick tries again.
		changed, err := m.reload(false)
		if err == nil && changed && onChange != nil {
			onChange(m.Current())
		}
	}
}

// reload reads the files if force is set or their stamps have changed, and
// reports whether it did.
func (m *Manager) reload(force bool) (changed bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.files
	// Stat before reading: a file replaced in between then has a newer stamp
	// than the one recorded, and is read again next time.
	certStamp, err := stampOf(f.certFile)
	if err != nil {
		return false, err
	}
	keyStamp, err := stampOf(f.keyFile)
	if err != nil {
		return false, err
	}
	if !force && certStamp.equal(f.certStamp) && keyStamp.equal(f.keyStamp) {
		return false, nil
	}
	cert, err := loadPair(f.certFile, f.keyFile)
	if err != nil {
		return false, err
	}
	m.state.Store(&state{cur: cert, curInfo: infoOf(cert.Leaf)})
	f.certStamp, f.keyStamp = certStamp, keyStamp
	return true, nil
}

// stampOf returns the stamp of the file at path.
func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, fmt.Errorf("certs: %w", err)
	}
	return stamp{modTime: fi.ModTime(), size: fi.Size()}, nil
}

// loadPair reads a certificate chain and its key, and makes sure Leaf is set.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: load %s and %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		// LoadX509KeyPair sets Leaf unless GODEBUG x509keypairleaf=0.
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("certs: parse %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}
