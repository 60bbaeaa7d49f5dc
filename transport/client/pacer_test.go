package client

import (
	"testing"
	"time"
)

func TestPosesAreDueInStepWithTheTick(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const period = 200 * time.Millisecond
	tests := []struct {
		name   string
		phase  time.Time
		copies int
		after  time.Time
		now    time.Time
		want   time.Time
	}{
		{"the first pose waits for the phase", ms(150), 1, time.Time{}, ms(0), ms(150)},
		{"a pose due a moment ago is still sent", ms(0), 1, time.Time{}, ms(10), ms(0)},
		{"a pose due long ago is skipped for the next tick's", ms(0), 1, time.Time{}, ms(30), ms(200)},
		{"a phase from long ago still holds", ms(-1000), 1, time.Time{}, ms(0), ms(0)},
		{"one pose per tick", ms(150), 1, ms(150), ms(151), ms(350)},
		{"a phase that moved earlier does not send twice for one tick", ms(140), 1, ms(150), ms(151), ms(340)},
		{"a phase that moved later is followed", ms(210), 1, ms(150), ms(151), ms(210)},
		{"two copies: the first a quarter tick early", ms(150), 2, time.Time{}, ms(0), ms(100)},
		{"two copies: the second at the phase", ms(150), 2, ms(100), ms(101), ms(150)},
		{"two copies: then the next tick's first", ms(150), 2, ms(150), ms(151), ms(300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextDue(tickPlan{phase: tt.phase, period: period, copies: tt.copies, after: tt.after, now: tt.now, lateness: period / 8})
			if !got.Equal(tt.want) {
				t.Errorf("due at %v, want %v", got.Sub(t0), tt.want.Sub(t0))
			}
		})
	}
}

// Whatever the phase and the time, a run of poses keeps to the plan: each
// due at the phase plus a whole number of periods, one per period.
func TestPosesKeepToTheirTickAcrossARun(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, period := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		for _, phaseMS := range []int{-730, 0, 13, 199} {
			phase := t0.Add(time.Duration(phaseMS) * time.Millisecond)
			var after time.Time
			now := t0
			for i := range 20 {
				due := nextDue(tickPlan{phase: phase, period: period, copies: 1, after: after, now: now, lateness: period / 8})
				if off := due.Sub(phase) % period; off != 0 {
					t.Fatalf("period %v phase %d ms: pose %d due %v off the phase", period, phaseMS, i, off)
				}
				if !after.IsZero() && due.Sub(after) != period {
					t.Fatalf("period %v phase %d ms: pose %d due %v after the one before, want one period", period, phaseMS, i, due.Sub(after))
				}
				after, now = due, due.Add(time.Millisecond)
			}
		}
	}
}
