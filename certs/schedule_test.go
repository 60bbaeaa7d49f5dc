package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestScheduleWait(t *testing.T) {
	s := schedule{every: 6 * day, backdate: time.Hour}
	t0 := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	// A pair made at t0, as NewSelfSigned makes it.
	fresh := cert(t0.Add(-time.Hour), 13*day)

	tests := []struct {
		name      string
		now       time.Time
		cur, next *x509.Certificate
		want      time.Duration
	}{
		{"a fresh pair looks again after a minute", t0, fresh, fresh, maxWait},
		{"thirty seconds before the rotation waits thirty seconds", t0.Add(6*day - 30*time.Second), fresh, fresh, 30 * time.Second},
		{"a rotation that is due waits for nothing", t0.Add(6 * day), fresh, fresh, 0},
		{"a rotation missed during a suspend waits for nothing", t0.Add(8 * day), fresh, fresh, 0},
		{
			"a pair whose next was made at a rotation is due every after that",
			t0.Add(11*day + time.Hour),
			cert(t0.Add(-time.Hour), 13*day),
			cert(t0.Add(6*day-time.Hour), 13*day),
			maxWait,
		},
		{
			"a next certificate made at a rotation is due every after it was made",
			t0.Add(12*day - time.Second),
			cert(t0.Add(-time.Hour), 13*day),
			cert(t0.Add(6*day-time.Hour), 13*day),
			time.Second,
		},
		{"a clock that went back before the current certificate rotates", t0.Add(-2 * time.Hour), fresh, fresh, 0},
		{
			"an expired current certificate rotates even if the next is not due",
			t0.Add(2 * day),
			cert(t0.Add(-10*day), 11*day),
			fresh,
			0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.wait(tt.now, tt.cur, tt.next); got != tt.want {
				t.Errorf("wait() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScheduleCanPromote(t *testing.T) {
	s := schedule{every: 6 * day, backdate: time.Hour}
	t0 := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	next := cert(t0.Add(-time.Hour), 13*day)

	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"a next certificate at its rotation time is promoted", t0.Add(6 * day), true},
		{"a next certificate rotated early by hand is promoted", t0, true},
		{"a next certificate that would expire while current is not promoted", t0.Add(8 * day), false},
		{"an expired next certificate is not promoted", t0.Add(20 * day), false},
		{"a next certificate not yet valid because the clock went back is not promoted", t0.Add(-2 * time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.canPromote(tt.now, next); got != tt.want {
				t.Errorf("canPromote(%v) = %v, want %v", tt.now, got, tt.want)
			}
		})
	}
}

// TestScheduleKeepsMargin follows rotations made late by up to the maximum
// wait and checks that no certificate is served outside its validity.
func TestScheduleKeepsMargin(t *testing.T) {
	for _, cfg := range []SelfSignedConfig{
		{},
		{Validity: 14 * day},
		{Validity: 3 * time.Second, RotateEvery: time.Second},
		{Validity: 10 * time.Minute, RotateEvery: 4 * time.Minute},
	} {
		s, err := newSelfSigned(cfg)
		if err != nil {
			t.Fatalf("newSelfSigned(%+v): %v", cfg, err)
		}
		made := func(at time.Time) *x509.Certificate {
			return cert(at.Add(-s.sched.backdate).Truncate(time.Second), s.validity)
		}
		now := time.Date(2030, 5, 1, 12, 0, 0, 123456789, time.UTC)
		cur, next := made(now), made(now)
		late := min(maxWait, s.sched.every/100)
		for range 50 {
			if !validAt(cur, now) || !validAt(next, now) {
				t.Fatalf("validity %v, every %v: at %v current %v..%v or next %v..%v is not valid",
					s.validity, s.sched.every, now, cur.NotBefore, cur.NotAfter, next.NotBefore, next.NotAfter)
			}
			if s.sched.wait(now, cur, next) > 0 {
				now = s.sched.due(next).Add(late)
				continue
			}
			if !s.sched.canPromote(now, next) {
				t.Fatalf("validity %v, every %v: at %v next %v..%v cannot be promoted",
					s.validity, s.sched.every, now, next.NotBefore, next.NotAfter)
			}
			cur, next = next, made(now)
		}
	}
}

// cert returns a certificate with only its validity set.
func cert(notBefore time.Time, validity time.Duration) *x509.Certificate {
	return &x509.Certificate{NotBefore: notBefore, NotAfter: notBefore.Add(validity)}
}
