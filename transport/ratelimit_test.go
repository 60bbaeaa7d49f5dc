package transport

import (
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newRateLimit(10, t0)
	allowed := 0
	for range 25 { // a burst at one instant: a second's worth passes
		if l.allow(t0) {
			allowed++
		}
	}
	if allowed != 10 {
		t.Errorf("%d of a burst of 25 allowed, want 10", allowed)
	}
	if !l.allow(t0.Add(150 * time.Millisecond)) {
		t.Error("no token after 150 ms at 10 per second")
	}
	// Steady excess, second after second, makes a run of seconds over.
	now := t0
	for range 5 * 100 { // 100 per second for 5 s
		now = now.Add(10 * time.Millisecond)
		l.allow(now)
	}
	if over := l.overFor(now); over < 4*time.Second || over > 6*time.Second {
		t.Errorf("over the limit for %v after 5 s of flooding", over)
	}
	// A second within the limit ends the run.
	for range 10 {
		now = now.Add(150 * time.Millisecond)
		l.allow(now)
	}
	if over := l.overFor(now); over != 0 {
		t.Errorf("still over for %v after keeping to the limit", over)
	}
	// Bursts over the limit with quiet seconds between make no run.
	l = newRateLimit(20, t0)
	now = t0
	for burst := range 4 {
		now = t0.Add(time.Duration(burst) * 7 * time.Second)
		for range 22 {
			l.allow(now)
		}
		if over := l.overFor(now); over > time.Second {
			t.Errorf("burst %d: over for %v, as if the quiet seconds between bursts did not count", burst, over)
		}
	}
}
