package transport

import "time"

// rateLimit is a token bucket for one session's traffic of one kind, used by
// one goroutine. It also tells a client that is over the limit now and then
// from one that stays over it: seconds with something dropped, one right
// after another, make a run, and a second without drops ends it.
type rateLimit struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time

	window      time.Time // start of the current second
	windowDrops int
	runStart    time.Time // start of the run of seconds with drops before this one; zero when none
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
	if elapsed := now.Sub(l.window); elapsed >= time.Second {
		switch {
		case l.windowDrops == 0 || elapsed >= 2*time.Second:
			// A second without drops, or a silent gap after the window,
			// ends any run.
			l.runStart = time.Time{}
		case l.runStart.IsZero():
			l.runStart = l.window
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
// after second, as of now: zero unless the current second has drops.
func (l *rateLimit) overFor(now time.Time) time.Duration {
	if l.windowDrops == 0 {
		return 0
	}
	if l.runStart.IsZero() {
		return now.Sub(l.window)
	}
	return now.Sub(l.runStart)
}
