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

// sendPoses sends the poses that changed in the last RepeatTicks ticks to
// every member, encoded once for the room and split into datagrams no larger
// than the smallest member's limit. A room with nothing to send sends a
// heartbeat now and then. Only the tick goroutine calls it.
func (r *Room) sendPoses(ro *roster, tick uint64) {
	if len(ro.members) == 0 {
		return
	}
	limit := codec.MaxDatagramSize
	for _, m := range ro.members {
		limit = min(limit, maxDatagram(m.member.MaxDatagramSize()))
	}
	room := limit - codec.PosesHeaderSize

	// Gather the records, noting where each datagram's share ends.
	recs := r.records[:0]
	var ends [256]int
	parts := 0
	start := 0
	repeat := uint64(r.cfg.RepeatTicks)
	for _, slot := range ro.slots {
		st := &r.slotTicks[slot]
		if v := r.table.Version(slot); v != st.version {
			st.version, st.changed = v, tick
		}
		if st.version == 0 || tick-st.changed > repeat {
			continue
		}
		at := len(recs)
		recs = codec.AppendSlotRecord(recs, uint16(slot), nil)
		recs, _ = r.table.Read(slot, recs)
		if len(recs)-start > room {
			ends[parts] = at
			parts++
			start = at
		}
	}
	r.records = recs

	if len(recs) == 0 {
		if tick-r.lastPoseTick < r.cfg.ticks(r.cfg.Heartbeat) {
			return
		}
		r.lastPoseTick = tick
		seq := r.seq.Load()
		for _, m := range ro.members {
			m.member.SendPoses(seq, nil)
		}
		return
	}
	ends[parts] = len(recs)
	parts++
	r.lastPoseTick = tick
	seq := r.seq.Add(1)

	// Members share the tick's records; recs is used anew next tick.
	shared := append([]byte(nil), recs...)
	runs := make([][]byte, parts)
	update := make([][][]byte, parts)
	from := 0
	for p := range parts {
		runs[p] = shared[from:ends[p]:ends[p]]
		update[p] = runs[p : p+1 : p+1]
		from = ends[p]
	}
	for _, m := range ro.members {
		m.member.SendPoses(seq, update)
	}
}
