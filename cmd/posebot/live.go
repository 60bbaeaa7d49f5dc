package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// liveLine prints the run's progress once a second: on a terminal one line
// rewritten in place, otherwise a plain line each time.
type liveLine struct {
	out      io.Writer
	terminal bool
	target   int
	last     liveStats
	lastAt   time.Time
}

type liveStats struct {
	joined         int
	sent, received uint64
	p50, p99       float64
	stale99        float64
	errors         map[string]uint64
}

func newLiveLine(out io.Writer, target int) *liveLine {
	l := &liveLine{out: out, target: target, lastAt: time.Now()}
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			l.terminal = true
		}
	}
	return l
}

func (l *liveLine) print(s liveStats) {
	now := time.Now()
	secs := now.Sub(l.lastAt).Seconds()
	line := fmt.Sprintf("joined %d/%d  poses/s %.0f  updates/s %.0f  latency p50 %.0f ms p99 %.0f ms  staleness p99 %.0f ms  errors %s",
		s.joined, l.target,
		float64(s.sent-l.last.sent)/secs, float64(s.received-l.last.received)/secs,
		s.p50, s.p99, s.stale99, errorSummary(s.errors))
	if l.terminal {
		fmt.Fprintf(l.out, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(l.out, line)
	}
	l.last, l.lastAt = s, now
}
