package rooms

import (
	"time"

	"github.com/posecast/posecast/codec"
)

// tickLoop runs the room's tick until the room stops or retires.
// Runs in its own goroutine, owned by the registry.
func (r *Room) tickLoop() {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			now := time.Now()
			late := max(0, now.Sub(last)-r.cfg.Tick)
			last = now
			if !r.tick(now, late) {
				continue
			}
			if r.reg.retire(r) {
				r.stopOnce.Do(func() { close(r.stop) })
				return
			}
		}
	}
}

// tick does one tick, begun late by late: under the lock, it settles held
// devices and stale avatars and sends the reliable diffs; then, without the
// lock, it sends the poses that changed. It reports whether the room has
// been empty for its grace period.
func (r *Room) tick(now time.Time, late time.Duration) (retire bool) {
	if r.cfg.OnTick != nil {
		defer func() { r.cfg.OnTick(late, time.Since(now)) }()
	}
	tick := r.tickCount.Add(1)
	r.mu.Lock()
	r.expireHeldLocked(now)
	r.markStaleLocked(now)
	r.resyncLocked(now)
	if !r.diff.empty() {
		r.broadcastLocked(r.takeDiffLocked(), nil)
	}
	if !r.presence.empty() {
		d := r.presence.take()
		r.fetchPresenceLocked(d.Joins, d.Leaves)
		r.broadcastLocked(d, nil)
		r.reg.hub.publish(r.id, d.Joins, d.Leaves, false)
	}
	r.sendHeldEventsLocked()
	ro := r.roster.Load()
	retire = len(r.users) == 0 && !r.emptySince.IsZero() && now.Sub(r.emptySince) >= r.cfg.EmptyGrace
	r.mu.Unlock()
	r.sendPoses(ro, tick)
	return retire
}

// expireHeldLocked lets held devices whose grace has ended leave.
// The room's lock must be held.
func (r *Room) expireHeldLocked(now time.Time) {
	var expired []*Membership
	for _, u := range r.users {
		for _, d := range u.devices {
			if d.state == membershipHeld && !now.Before(d.heldUntil) {
				expired = append(expired, d)
			}
		}
	}
	for _, d := range expired {
		r.leaveLocked(d)
	}
}

// markStaleLocked tells the room about avatars whose poses stopped arriving,
// and about those that came back: the driving device's presence meta
// changes, and user_stale or user_recovered is published. An avatar is
// stale at the first tick at least StaleAfter after it was last heard
// from, so between StaleAfter and StaleAfter plus a tick after its last
// pose (later when the tick itself is late).
// The room's lock must be held.
func (r *Room) markStaleLocked(now time.Time) {
	for _, u := range r.users {
		stale := now.UnixNano()-u.heardAt.Load() >= int64(r.cfg.StaleAfter)
		if stale == u.stale {
			continue
		}
		u.stale = stale
		if u.driver != nil && u.driver.meta.Stale != stale {
			r.updateMetaLocked(u.driver, func(m *codec.PresenceMeta) { m.Stale = stale })
		}
		name := codec.EventUserRecovered
		if stale {
			name = codec.EventUserStale
		}
		r.emitLocked(Event{Name: name, User: u.id})
	}
}

// sendPoses sends each member the poses that changed in the last
// RepeatTicks ticks among those of interest to it (Interest): the records
// are encoded once for the room, cell by cell, and each member's update is
// made of shared runs of them, in datagrams no larger than its limit. A
// member sent nothing for a while gets a heartbeat. Only the tick
// goroutine calls it.
func (r *Room) sendPoses(ro *roster, tick uint64) {
	if len(ro.members) == 0 {
		return
	}
	rule := r.interest.Load()
	if rule.Disabled {
		rule = nil
	}
	// When every avatar is among everyone's nearest, all are near.
	everyone := rule == nil || len(ro.slots) <= rule.Nearest+1
	g := &r.grid
	g.build(r, ro, tick, rule, everyone)
	heartbeat := r.cfg.ticks(r.cfg.Heartbeat)
	for _, m := range ro.members {
		payload := maxDatagram(m.member.MaxDatagramSize()) - codec.PosesHeaderSize
		var parts [][][]byte
		if everyone {
			parts = g.shared(payload, false)
		} else {
			far := (tick+m.farPhase)%rule.farEvery == 0
			parts = g.update(r, rule, m.slot, far, payload)
		}
		switch {
		case len(parts) > 0:
			m.lastSent = tick
			m.member.SendPoses(m.seq.Add(1), parts)
		case tick-m.lastSent >= heartbeat:
			m.lastSent = tick
			m.member.SendPoses(m.seq.Load(), nil)
		}
	}
}
