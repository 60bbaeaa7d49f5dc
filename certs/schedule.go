package certs

import (
	"crypto/x509"
	"time"
)

// maxWait caps how long Run sleeps between looks at the clock. Timers do not
// count the time a machine spends suspended, but certificates expire by the
// wall clock.
const maxWait = time.Minute

// schedule decides when a self-signed Manager rotates. Its methods are pure,
// so tests drive them with made-up times.
//
// A certificate made at time G is valid from G - backdate, rounded down to a
// second, for the configured validity V. It is next until the following
// rotation, every later, and current until the one after that, so it is
// retired at about G + 2*every with V - 2*every - backdate of validity left,
// which is at least half the margin V - 2*every.
type schedule struct {
	every    time.Duration
	backdate time.Duration
}

// due returns when the current certificate hands over to next. The next
// certificate is made when the current one takes over (at the start, together
// with it), so that is every after next was made, which its NotBefore
// records. The rounding of NotBefore makes due up to a second early, never
// late.
func (s schedule) due(next *x509.Certificate) time.Time {
	return next.NotBefore.Add(s.backdate + s.every)
}

// wait returns how long to sleep at now before looking again: zero when a
// rotation is due, or when the current certificate is not valid at now
// because the clock jumped; otherwise the time until due, at most maxWait.
func (s schedule) wait(now time.Time, cur, next *x509.Certificate) time.Duration {
	if !validAt(cur, now) {
		return 0
	}
	return min(max(s.due(next).Sub(now), 0), maxWait)
}

// canPromote reports whether next may become current at now: it must stay
// valid until the rotation after this one, every later. After a long suspend
// or a clock jump it may not, and the Manager makes a fresh pair instead.
func (s schedule) canPromote(now time.Time, next *x509.Certificate) bool {
	return validAt(next, now) && validAt(next, now.Add(s.every))
}

// validAt reports whether t lies within c's validity.
func validAt(c *x509.Certificate, t time.Time) bool {
	return !t.Before(c.NotBefore) && !t.After(c.NotAfter)
}
