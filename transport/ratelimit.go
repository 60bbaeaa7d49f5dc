package transport

import "time"

// rateLimit is a token bucket for one session's traffic of one kind, used by
// one goroutine. It also tells a client that is over the limit now and then
// from one that stays over it: each second with something dropped extends a
// run of such seconds, and a second without drops ends it.
type rateLimit struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time

	window      time.Time // start of the current second
	windowDrops int
	overSince   time.Time // start of the run of seconds with drops; zero when none
}

func newRateLimit(rate float64, now time.Time) *rateLimit {
	burst := max(rate, 1)
	return &rateLimit{rate: rate, burst: burst, tokens: burst, last: now, window: now}
}

// allow takes a token for one event at now, or reports that it must be
// dropped.
func (l *rateLimit) allow(now time.Time) bool {
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if now.Sub(l.window) >= time.Second {
		switch {
		case l.windowDrops == 0:
			l.overSince = time.Time{}
		case l.overSince.IsZero():
			l.overSince = l.window
		}
		l.window, l.windowDrops = now, 0
	}
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.windowDrops++
	return false
}

// overFor returns how long the client has been dropping events, second
// after second, as of now.
func (l *rateLimit) overFor(now time.Time) time.Duration {
	if l.windowDrops == 0 || l.overSince.IsZero() {
		if l.windowDrops > 0 {
			return now.Sub(l.window)
		}
		return 0
	}
	return now.Sub(l.overSince)
}
