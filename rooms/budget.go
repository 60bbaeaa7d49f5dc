package rooms

import (
	"fmt"
	"time"
)

// byteBudget is a token bucket of bytes: what members may make a room send
// reliably. Its owner's lock guards it.
type byteBudget struct {
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newByteBudget(rate, burst int, now time.Time) byteBudget {
	return byteBudget{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// refill adds what has accrued since the last call.
func (b *byteBudget) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// spendReliableLocked charges m and the room for a message of n bytes that
// every other member will be sent, or refuses it with ErrRateLimited when
// either budget lacks the bytes: the cost of one member's traffic falls on
// that member, and the room's, however many members send, stays within
// what an honest receiver's backlog holds. The room's lock must be held.
func (r *Room) spendReliableLocked(m *Membership, n int, now time.Time) error {
	m.budget.refill(now)
	r.budget.refill(now)
	cost := float64(n)
	switch {
	case m.budget.tokens < cost:
		return fmt.Errorf("%w: over this member's reliable budget of %d bytes a second (the message is %d bytes)", ErrRateLimited, r.cfg.MemberBytes, n)
	case r.budget.tokens < cost:
		return fmt.Errorf("%w: over the room's reliable budget of %d bytes a second (the message is %d bytes)", ErrRateLimited, r.cfg.RoomBytes, n)
	}
	m.budget.tokens -= cost
	r.budget.tokens -= cost
	return nil
}

// refundLocked gives back what spendReliableLocked took for a message that
// was refused after all. The room's lock must be held.
func (r *Room) refundLocked(m *Membership, n int) {
	m.budget.tokens = min(m.budget.burst, m.budget.tokens+float64(n))
	r.budget.tokens = min(r.budget.burst, r.budget.tokens+float64(n))
}

// budgetedLocked runs op, a change or an event of about n bytes that every
// other member will be sent, if m and the room have the bytes for it, and
// charges them only when it succeeds. The room's lock must be held.
func (r *Room) budgetedLocked(m *Membership, n int, op func() error) error {
	n += messageOverhead
	if err := r.spendReliableLocked(m, n, time.Now()); err != nil {
		return err
	}
	if err := op(); err != nil {
		r.refundLocked(m, n)
		return err
	}
	return nil
}

// messageOverhead is what a message costs besides its payload: its type,
// keys and framing.
const messageOverhead = 32

// budgetBurst is how many seconds' worth a budget holds.
const budgetBurst = 4
