package client

import (
	"time"
)

// Schedule says when a client sends its poses.
//
// In step with the tick (Hz zero, the default), a client sends its newest
// pose once per tick of its room, timed to reach the server shortly before
// the tick reads it. The server reads each member's newest pose once per
// tick, so a pose sent faster than that is overwritten unread, and a pose
// that reaches the server just before a tick is as young as a forwarded pose
// can be. The room's pose datagrams give the tick's phase: each leaves the
// server at a tick and arrives about half a round trip later, so a pose sent
// one round trip and a margin before the next such arrival reaches the
// server a margin before that tick. A lost datagram leaves the phase as it
// was, and the schedule goes on at the tick period; before the first one
// arrives, poses go out at the tick period.
//
// Free-running (Hz positive), a client sends Hz poses a second whatever the
// tick, as a headset that sends every frame's pose does.
type Schedule struct {
	// Hz, when positive, is the free-running rate in poses a second.
	Hz float64
	// Copies is how many poses are sent per tick, 1 (the default) or 2. A
	// second, for lossy links, goes a quarter of a tick after the first and
	// both are due before the tick: when one is lost, the other is read.
	Copies int
	// Margin, when positive, is how long before the tick a pose is meant
	// to arrive. Zero lets the client find it: it starts at a tenth of the
	// tick period and follows what the ticks show of the client's own
	// poses, shrinking slowly while they come in time and growing when one
	// came too late for its tick, so that about one pose in 500 is late.
	Margin time.Duration
}

// Pacer tells one pose loop when its next pose is due. It is not safe for
// concurrent use: one loop owns it.
type Pacer struct {
	c    *Client
	s    Schedule
	last time.Time // when the previous pose was due; zero before the first
}

// Pacer returns a pacer for the client's poses on schedule s.
func (c *Client) Pacer(s Schedule) *Pacer {
	s.Copies = min(2, max(1, s.Copies))
	return &Pacer{c: c, s: s}
}

// Next returns when the next pose is due: now, or later. Call it once per
// pose sent, after sending it.
func (p *Pacer) Next(now time.Time) time.Time {
	if p.last.IsZero() {
		p.last = now // the first pose was due when it went
	}
	if p.s.Hz > 0 {
		p.last = latest(now, p.last.Add(time.Duration(float64(time.Second)/p.s.Hz)))
		return p.last
	}
	period := p.c.TickPeriod()
	if period <= 0 {
		period = unknownTick
	}
	arrival, ok := p.c.tickPhase()
	if !ok {
		p.last = latest(now, p.last.Add(period/time.Duration(p.s.Copies)))
		return p.last
	}
	margin := p.s.Margin
	if margin == 0 {
		margin = time.Duration(p.c.margin.Load())
	}
	// The round trip's floor: what the path adds beyond it, the margin
	// learns.
	due := nextDue(tickPlan{
		phase:    arrival.Add(-p.c.conn.ConnectionStats().MinRTT - margin),
		period:   period,
		copies:   p.s.Copies,
		after:    p.last,
		now:      now,
		lateness: period / 8,
	})
	p.last = due
	return latest(now, due)
}

// unknownTick is the period a pacer assumes for a server that names none:
// posecast's default tick.
const unknownTick = 200 * time.Millisecond

// tickPlan is what nextDue works from.
type tickPlan struct {
	// phase is a time at which a pose is due: the tick datagram's arrival,
	// less the round trip and the margin. Poses are due one period apart
	// from it, both ways.
	phase  time.Time
	period time.Duration
	// copies is how many poses are due per period, a quarter period apart,
	// the last of them at the phase.
	copies int
	// after is when the previous pose was due; the next is due later than
	// that by more than a quarter period, an eighth with two copies.
	after time.Time
	// now is the time; a pose due longer ago than lateness is skipped.
	now      time.Time
	lateness time.Duration
}

// nextDue returns when the next pose of plan is due.
func nextDue(plan tickPlan) time.Time {
	spacing := plan.period / 4
	earliest := latest(plan.now.Add(-plan.lateness), plan.after.Add(plan.period/time.Duration(4*plan.copies)+1))
	// The first copy of the tick whose poses are due at or after earliest.
	first := plan.phase.Add(-time.Duration(plan.copies-1) * spacing)
	k := floorDiv(earliest.Sub(first), plan.period)
	for ; ; k++ {
		base := first.Add(time.Duration(k) * plan.period)
		for j := range plan.copies {
			if at := base.Add(time.Duration(j) * spacing); !at.Before(earliest) {
				return at
			}
		}
	}
}

// floorDiv is d divided by p, rounded down.
func floorDiv(d, p time.Duration) int64 {
	q := int64(d / p)
	if d%p < 0 {
		q--
	}
	return q
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
