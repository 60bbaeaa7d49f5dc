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

func TestTheMarginLearnsFromTheClientsOwnAvatar(t *testing.T) {
	const period = 200 * time.Millisecond
	const step = int64(period / 40)
	tests := []struct {
		name     string
		echo     uint32 // the time of the own avatar's pose in the update
		other    bool   // the update carries another slot only
		moved    bool   // the newest pose sent moved
		arrivals uint32
		margin   int64
		want     int64
	}{
		{"a pose in time shrinks it a little", 20, false, true, 16, 10e6, 10e6 - step/(lateTarget-1)},
		{"a late pose grows it", 10, false, true, 16, 10e6, 10e6 + step},
		{"an older pose says nothing", 5, false, true, 16, 10e6, 10e6},
		{"a pose that did not move says nothing", 10, false, false, 16, 10e6, 10e6},
		{"an update without the own avatar says nothing", 10, true, true, 16, 10e6, 10e6},
		{"nothing before the phase is settled", 10, false, true, 15, 10e6, 10e6},
		{"it stays under half a tick", 10, false, true, 16, int64(period/2) - 1, int64(period / 2)},
		{"it stays over half a millisecond", 20, false, true, 16, 5e5, 5e5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newOfflineClient()
			c.tickPeriod.Store(int64(period))
			c.ownSlot.Store(3)
			c.tickArrivalN.Store(tt.arrivals)
			c.margin.Store(tt.margin)
			c.sentPoses.Store(10<<32 | 20) // sent at 10, then at 20
			c.sentCount.Store(2)
			c.sentMoved.Store(tt.moved)
			slot := uint16(3)
			if tt.other {
				slot = 4
			}
			c.judgeOwnPose(update(7, slotRec(slot, headAt(tt.echo, 1))))
			if got := c.margin.Load(); got != tt.want {
				t.Errorf("margin %v, want %v", time.Duration(got), time.Duration(tt.want))
			}
			// The same tick, or a tick with nothing sent since, is judged once.
			c.judgeOwnPose(update(8, slotRec(slot, headAt(tt.echo, 1))))
			if got := c.margin.Load(); got != tt.want {
				t.Errorf("judged again without a pose sent since: margin %v, want %v", time.Duration(got), time.Duration(tt.want))
			}
		})
	}
}
