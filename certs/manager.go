package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Manager serves a current certificate and replaces it without a restart:
// self-signed certificates rotate, certificate files are reloaded when they
// change. Handshakes that are already done are unaffected by a change; new
// ones get the new certificate.
//
// A Manager is made by NewSelfSigned or LoadFiles; the zero value is not
// usable. It is safe for concurrent use.
type Manager struct {
	// state is replaced whole, never modified, so GetCertificate reads it
	// without a lock.
	state atomic.Pointer[state]

	// Exactly one of self and files is set, on creation.
	self  *selfSigned
	files *fileSource

	mu sync.Mutex // serializes replacing state; guards the fields of files
}

// state is what a Manager serves.
type state struct {
	cur, next         *tls.Certificate // next is nil for certificate files
	curInfo, nextInfo Info
}

// NewSelfSigned returns a Manager that serves certificates it makes itself,
// as configured by cfg. It makes the current and the next certificate at
// once, so that clients can be given both hashes from the start. Both are
// valid from an hour before now, so a client whose clock is a little behind
// accepts them; from less than that if Validity - 2*RotateEvery is under two
// hours, to keep half of that margin for the end.
func NewSelfSigned(cfg SelfSignedConfig) (*Manager, error) {
	s, err := newSelfSigned(cfg)
	if err != nil {
		return nil, err
	}
	m := &Manager{self: s}
	st, err := m.freshPair(s.now())
	if err != nil {
		return nil, err
	}
	m.state.Store(st)
	return m, nil
}

// GetCertificate returns the current certificate, whatever the client said;
// it fits tls.Config.GetCertificate. It runs on every handshake, so it is a
// single atomic load and does not allocate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.state.Load().cur, nil
}

// TLSConfig returns a new tls.Config that serves m's current certificate and
// requires TLS 1.3, as QUIC does. NextProtos is left empty for the HTTP/3
// server to set.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: m.GetCertificate,
	}
}

// Hashes returns the hashes of the current certificate and of the next one,
// which takes over at the next rotation. Giving clients both keeps their
// serverCertificateHashes working across one rotation. next is zero for
// certificate files.
func (m *Manager) Hashes() (current, next Hash) {
	st := m.state.Load()
	return st.curInfo.Hash, st.nextInfo.Hash
}

// Current describes the certificate being served.
func (m *Manager) Current() Info {
	return m.state.Load().curInfo.clone()
}

// Rotate replaces the current certificate now. For self-signed certificates
// the next one becomes current and a fresh next one is made; if the next one
// would expire before the rotation after this one (after a long suspend, or
// a clock jump), both are made fresh. For certificate files Rotate rereads
// them, even if they look unchanged, and otherwise behaves like Reload.
func (m *Manager) Rotate() error {
	if m.files != nil {
		_, err := m.reload(true)
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rotateLocked(m.self.now())
}

// Reload rereads the certificate files if the modification time or the size
// of either has changed. On error it keeps serving the pair it had and
// returns the error; the next Reload tries again. For self-signed
// certificates it does nothing.
func (m *Manager) Reload() error {
	if m.files == nil {
		return nil
	}
	_, err := m.reload(false)
	return err
}

// Run keeps the certificate fresh until ctx is done, then returns nil. The
// caller owns the goroutine that runs it; one Run per Manager is enough.
//
// For self-signed certificates it rotates when the current certificate has
// been served for RotateEvery, a time it works out from the certificates
// themselves and the wall clock, looking at least once a minute because
// timers stand still while the machine is suspended. It returns early only
// if making a certificate fails, which takes a broken random source.
//
// For certificate files it calls Reload every minute. A failed reload keeps
// the old pair and is tried again a minute later; Run does not report it.
//
// Run calls onChange, if not nil, on its own goroutine with the new current
// certificate after each rotation and each reload that read the files.
func (m *Manager) Run(ctx context.Context, onChange func(Info)) error {
	if m.files != nil {
		m.runFiles(ctx, onChange)
		return nil
	}
	return m.runSelfSigned(ctx, onChange)
}

// runSelfSigned is Run for self-signed certificates.
func (m *Manager) runSelfSigned(ctx context.Context, onChange func(Info)) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		wait, rotated, err := m.rotateIfDue()
		if err != nil {
			return err
		}
		if rotated && onChange != nil {
			onChange(m.Current())
		}
		t.Reset(wait)
	}
}

// rotateIfDue rotates if the schedule says so, and returns how long to wait
// before asking again.
func (m *Manager) rotateIfDue() (wait time.Duration, rotated bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state.Load()
	now := m.self.now()
	if wait := m.self.sched.wait(now, st.cur.Leaf, st.next.Leaf); wait > 0 {
		return wait, false, nil
	}
	if err := m.rotateLocked(now); err != nil {
		return 0, false, err
	}
	st = m.state.Load()
	return m.self.sched.wait(m.self.now(), st.cur.Leaf, st.next.Leaf), true, nil
}

// rotateLocked makes the next certificate current and a fresh one next, or a
// fresh pair if the next one cannot be served until the rotation after.
// m.mu must be held.
func (m *Manager) rotateLocked(now time.Time) error {
	old := m.state.Load()
	if !m.self.sched.canPromote(now, old.next.Leaf) {
		st, err := m.freshPair(now)
		if err != nil {
			return err
		}
		m.state.Store(st)
		return nil
	}
	next, err := m.self.generate(now)
	if err != nil {
		return fmt.Errorf("certs: rotate: %w", err)
	}
	m.state.Store(&state{
		cur:      old.next,
		curInfo:  old.nextInfo,
		next:     next,
		nextInfo: infoOf(next.Leaf),
	})
	return nil
}

// freshPair makes a new current and next certificate, both valid from now.
func (m *Manager) freshPair(now time.Time) (*state, error) {
	cur, err := m.self.generate(now)
	if err != nil {
		return nil, err
	}
	next, err := m.self.generate(now)
	if err != nil {
		return nil, err
	}
	return &state{
		cur:      cur,
		curInfo:  infoOf(cur.Leaf),
		next:     next,
		nextInfo: infoOf(next.Leaf),
	}, nil
}
