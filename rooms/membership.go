package rooms

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/posecast/posecast/codec"
)

// ErrNotDriver reports a pose from a device that does not drive its user's
// avatar (another device of the same user sends poses), or from a
// membership that has ended. The pose is ignored.
var ErrNotDriver = errors.New("device does not drive the avatar")

type membershipState int

const (
	membershipActive membershipState = iota
	// membershipHeld is a device whose session dropped; it stays present
	// until its reconnect grace ends or a reconnect takes it over.
	membershipHeld
	membershipGone
)

// Membership is one session's place in a room: a device of a user. A session
// calls its methods from its own goroutines; all are safe for concurrent use.
type Membership struct {
	room   *Room
	member Member
	slot   int
	owner  uint64 // the user's owner number of the slot

	// Guarded by room.mu.
	user      *user
	meta      codec.PresenceMeta
	state     membershipState
	heldUntil time.Time
	budget    byteBudget // what it may make the room send reliably
	resynced  time.Time  // when it was last sent a resync's state

	// posedAt is when this device last sent a pose, driving or not (Unix
	// nanoseconds; 0: never).
	posedAt atomic.Int64
	// staleMeta mirrors meta.Stale for the pose path, which holds no lock.
	staleMeta atomic.Bool

	// seq numbers the pose updates sent to this member; the tick writes
	// it, a state read under the room's lock reads it.
	seq atomic.Uint32
	// farPhase puts the member's far ticks at ticks where
	// (tick+farPhase) % FarEvery is 0.
	farPhase uint64
	// lastSent is the tick of the last update or heartbeat sent to it.
	// Only the tick goroutine uses it.
	lastSent uint64
}

// Room returns the room's id.
func (m *Membership) Room() string { return m.room.id }

// User returns the user id.
func (m *Membership) User() string { return m.user.id }

// Slot returns the avatar's slot in the room's pose updates.
func (m *Membership) Slot() int { return m.slot }

// UpdatePose stores a pose record from this device in the avatar's slot. It
// is the hot path: lock-free and allocation-free, but for the pose with
// which a device takes over driving. It reports whether the avatar moved; a
// pose from a device that does not drive the avatar returns ErrNotDriver,
// and a malformed record codec.ErrMalformed.
func (m *Membership) UpdatePose(rec []byte) (bool, error) {
	if err := codec.CheckPose(rec); err != nil {
		return false, err
	}
	r := m.room
	now := time.Now().UnixNano()
	m.posedAt.Store(now)
	if r.drivers[m.slot].Load() != m && !m.takeOver(now) {
		return false, ErrNotDriver
	}
	// The driver may change between the check and the write; the slot may
	// even go to another user. The write is refused then.
	changed, ok := r.table.WriteAs(m.slot, m.owner, rec)
	if !ok {
		return false, ErrNotDriver
	}
	m.user.heardAt.Store(now)
	return changed, nil
}

// takeOver is called with a pose from a device that does not drive its
// avatar, at now (Unix nanoseconds). The device whose poses are newest
// drives: m takes over when the driving device has sent no pose for
// StaleAfter (or none at all) or is no longer connected, so that a device
// that sends no poses never takes over from one that does, and two devices
// that both send do not take turns. It reports whether m drives now. A
// device whose meta still says stale from when it drove has it cleared,
// since it sends again.
func (m *Membership) takeOver(now int64) bool {
	r := m.room
	d := r.drivers[m.slot].Load()
	if d == nil {
		return false // the user has left
	}
	if d.sentWithin(now, r.cfg.StaleAfter) && !m.staleMeta.Load() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return false
	}
	u := m.user
	if m.meta.Stale && u.driver != m {
		r.updateMetaLocked(m, func(meta *codec.PresenceMeta) { meta.Stale = false })
	}
	if u.driver == m {
		return true
	}
	if u.driver.state == membershipActive && u.driver.sentWithin(now, r.cfg.StaleAfter) {
		return false
	}
	r.setDriverLocked(u, m, now)
	return true
}

// sentWithin reports whether the device sent a pose in the d before now
// (Unix nanoseconds).
func (m *Membership) sentWithin(now int64, d time.Duration) bool {
	at := m.posedAt.Load()
	return at != 0 && now-at < int64(d)
}

// Leave takes this device out of the room at once; others learn of it in
// the next tick. It is a no-op once the membership has ended.
func (m *Membership) Leave() {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaveLocked(m)
}

// Disconnect reports that the session ended without leaving, lastHeard
// being when it last heard from its client. The device stays present until
// lastHeard plus the reconnect grace, so that a reconnect of the same user
// takes over the avatar without a leave and a join; a session that timed
// out has used its grace already and leaves at once.
func (m *Membership) Disconnect(lastHeard time.Time) {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disconnectLocked(m, lastHeard, time.Now())
}

// Publish relays an application event, such as user_grabbed or door_opened,
// to the room's other members and its listeners.
func (m *Membership) Publish(name string, data any) error {
	if !validEventName(name) {
		return fmt.Errorf("%w: event name %q", ErrInvalid, name)
	}
	if err := codec.CheckJSON(data); err != nil {
		return fmt.Errorf("%w: event data: %v", ErrInvalid, err)
	}
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return ErrLeft
	}
	return r.budgetedLocked(m, len(name)+valueSize(data), func() error {
		r.emitLocked(Event{Name: name, User: m.user.id, Data: data, from: m})
		return nil
	})
}

// UpdateMeta replaces the application meta of this device's presence, as
// Phoenix.Presence's update does: the room's members see, at the next tick,
// the old meta leave and the new one join, with a new phx_ref and the old
// one as phx_ref_prev. An empty meta clears it. It counts against the
// member's byte budget for what it makes the room send (the diff carries
// both metas).
func (m *Membership) UpdateMeta(meta map[string]any) error {
	if len(meta) == 0 {
		meta = nil
	}
	size := valueSize(meta)
	if size > MaxMetaBytes {
		return fmt.Errorf("%w: meta over %d bytes", ErrInvalid, MaxMetaBytes)
	}
	if err := codec.CheckJSON(meta); err != nil {
		return fmt.Errorf("%w: meta: %v", ErrInvalid, err)
	}
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return ErrLeft
	}
	return r.budgetedLocked(m, 2*(size+presenceMetaOverhead), func() error {
		r.updateMetaLocked(m, func(pm *codec.PresenceMeta) { pm.Meta = meta })
		return nil
	})
}

// presenceMetaOverhead is about what a presence meta takes on the wire
// besides its application meta: refs, name, device, times.
const presenceMetaOverhead = 160

// Entity changes are in the room's world (and its members' next diff) when
// their method returns, and in the store later, written in batches. stored,
// when not nil, is told which: nil once the change is in the store, or the
// error for which it never will be (the room was deleted or moved to
// another node, or the server stopped with the store away). It is called
// once, from another goroutine, and must not block; it is not called when
// the method returns an error.

// CreateEntity adds an environment entity and returns its id.
func (m *Membership) CreateEntity(c Components, stored func(error)) (string, error) {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return "", ErrLeft
	}
	var id string
	err := r.budgetedLocked(m, componentsSize(c), func() (err error) {
		id, err = r.createEntityLocked(m.user.id, c, stored)
		return err
	})
	return id, err
}

// UpdateEntity merges components into an environment entity; a nil value
// removes that component, and an entity left with none is deleted.
// Avatars cannot be changed this way.
func (m *Membership) UpdateEntity(id string, c Components, stored func(error)) error {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return ErrLeft
	}
	return r.budgetedLocked(m, len(id)+componentsSize(c), func() error {
		return r.updateEntityLocked(m.user.id, id, c, stored)
	})
}

// DeleteEntity removes an environment entity. Avatars cannot be deleted.
func (m *Membership) DeleteEntity(id string, stored func(error)) error {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return ErrLeft
	}
	return r.budgetedLocked(m, len(id), func() error {
		return r.deleteEntityLocked(m.user.id, id, stored)
	})
}

// Resync sends this device a fresh entities_state, for a receiver that lost
// pose updates it cannot recover.
// A member gets at most one a second, or one every 10 ms per avatar in a
// room of more than 100 (a state costs about 120 bytes an avatar): asked
// sooner, the state comes once the interval is over, at a tick, however
// many times it was asked for.
func (m *Membership) Resync() error {
	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.state != membershipActive {
		return ErrLeft
	}
	if now := time.Now(); now.Sub(m.resynced) >= r.resyncIntervalLocked() {
		m.resynced = now
		r.sendLocked(m.member, r.entitiesStateLocked(m))
		return nil
	}
	if r.resyncs == nil {
		r.resyncs = make(map[*Membership]struct{})
	}
	r.resyncs[m] = struct{}{}
	return nil
}

// resyncIntervalLocked is the least time between two states a member's
// resyncs bring. The room's lock must be held.
func (r *Room) resyncIntervalLocked() time.Duration {
	return max(time.Second, time.Duration(len(r.users))*10*time.Millisecond)
}

// resyncLocked sends the states of the resyncs whose turn has come.
// The room's lock must be held.
func (r *Room) resyncLocked(now time.Time) {
	for m := range r.resyncs {
		switch {
		case m.state != membershipActive:
			delete(r.resyncs, m)
		case now.Sub(m.resynced) >= r.resyncIntervalLocked():
			delete(r.resyncs, m)
			m.resynced = now
			r.sendLocked(m.member, r.entitiesStateLocked(m))
		}
	}
}
