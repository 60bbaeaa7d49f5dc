package rooms

import (
	"github.com/posecast/posecast/codec"
)

// presenceDiff collects presence joins and leaves between two ticks, as
// Phoenix.Presence does between two broadcasts. Receivers apply joins, then
// leaves, merging metas by phx_ref; with that order a diff never needs
// pruning: a meta that joined and left within one diff is added and removed,
// and a meta already in a receiver's state is not added twice.
type presenceDiff struct {
	joins, leaves map[string][]codec.PresenceMeta
}

func (d *presenceDiff) join(key string, m codec.PresenceMeta) {
	if d.joins == nil {
		d.joins = make(map[string][]codec.PresenceMeta)
	}
	d.joins[key] = append(d.joins[key], m)
}

func (d *presenceDiff) leave(key string, m codec.PresenceMeta) {
	if d.leaves == nil {
		d.leaves = make(map[string][]codec.PresenceMeta)
	}
	d.leaves[key] = append(d.leaves[key], m)
}

func (d *presenceDiff) empty() bool {
	return len(d.joins) == 0 && len(d.leaves) == 0
}

// take returns the diff as a message and resets d.
func (d *presenceDiff) take() *codec.PresenceDiff {
	msg := &codec.PresenceDiff{Joins: entries(d.joins), Leaves: entries(d.leaves)}
	*d = presenceDiff{}
	return msg
}

func entries(m map[string][]codec.PresenceMeta) map[string]codec.PresenceEntry {
	out := make(map[string]codec.PresenceEntry, len(m))
	for k, metas := range m {
		out[k] = codec.PresenceEntry{Metas: metas}
	}
	return out
}

// presenceStateLocked returns the room's whole presence: a key per present
// user, a meta per device in the order they joined.
// The room's lock must be held.
func (r *Room) presenceStateLocked() *codec.PresenceState {
	state := make(map[string]codec.PresenceEntry, len(r.users))
	for id, u := range r.users {
		metas := make([]codec.PresenceMeta, len(u.devices))
		for i, d := range u.devices {
			metas[i] = d.meta
		}
		state[id] = codec.PresenceEntry{Metas: metas}
	}
	return &codec.PresenceState{State: state}
}

// fetchPresenceLocked has Config.FetchPresence add to the entries of one
// message, all of its maps in one batch.
// The room's lock must be held.
func (r *Room) fetchPresenceLocked(sets ...map[string]codec.PresenceEntry) {
	fetch := r.cfg.FetchPresence
	if fetch == nil {
		return
	}
	batch := make(map[string]codec.PresenceEntry)
	for _, set := range sets {
		for user, e := range set {
			batch[user] = codec.PresenceEntry{Metas: e.Metas}
		}
	}
	fetch(r.id, batch)
	for _, set := range sets {
		for user, e := range set {
			e.Extra = batch[user].Extra
			set[user] = e
		}
	}
}

// updateMetaLocked changes a device's meta the Phoenix way: a new ref, the
// old one in phx_ref_prev, and a leave of the old meta with a join of the new.
// The room's lock must be held.
func (r *Room) updateMetaLocked(m *Membership, change func(*codec.PresenceMeta)) {
	old := m.meta
	m.meta.PrevRef = old.Ref
	m.meta.Ref = newID("p")
	change(&m.meta)
	m.staleMeta.Store(m.meta.Stale)
	r.presence.leave(m.user.id, old)
	r.presence.join(m.user.id, m.meta)
}
