package rooms

import (
	"slices"
	"sync"

	"github.com/posecast/posecast/codec"
)

// RoomPresence is a room's presence: each present user's metas, one per
// device, keyed by user id.
type RoomPresence = map[string][]codec.PresenceMeta

// PresenceUpdate is one change to the presence of a room of this node. The
// node numbers its updates, across all its rooms, in the order they happen:
// a receiver that has seen every number since a snapshot holds the node's
// presence exactly.
type PresenceUpdate struct {
	// Seq is the update's number on this node: the one before it plus one.
	Seq uint64
	// RoomSeq numbers the updates of this room on this node, from 1; it
	// starts again when the room starts again.
	RoomSeq uint64
	Room    string
	// Joins and Leaves are the room's presence_diff: apply the joins, then
	// the leaves, merging metas by phx_ref.
	Joins, Leaves map[string]codec.PresenceEntry
	// Gone is true when the room stopped on this node: forget its presence.
	Gone bool
}

// presenceHub keeps the presence of every room of the node, as the rooms'
// ticks publish it, numbered, so that presence across rooms (on this node
// or, through a cluster, others) can start from a snapshot and follow the
// changes after it without missing or repeating one.
type presenceHub struct {
	mu       sync.Mutex // guards the following
	seq      uint64
	rooms    map[string]RoomPresence
	roomSeqs map[string]uint64
	watchers map[int]func(PresenceUpdate)
	nextID   int
}

// publish records a change to a room's presence and tells the watchers.
// Rooms call it with their lock held, so one room's changes stay in order.
func (h *presenceHub) publish(room string, joins, leaves map[string]codec.PresenceEntry, gone bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rooms == nil {
		h.rooms = make(map[string]RoomPresence)
		h.roomSeqs = make(map[string]uint64)
	}
	roomSeq := h.roomSeqs[room] + 1
	if gone {
		if _, ok := h.rooms[room]; !ok {
			delete(h.roomSeqs, room)
			return // it has no one to take away
		}
		delete(h.rooms, room)
		delete(h.roomSeqs, room)
	} else {
		h.roomSeqs[room] = roomSeq
		state := h.rooms[room]
		if state == nil {
			state = make(RoomPresence)
			h.rooms[room] = state
		}
		ApplyPresence(state, joins, leaves)
		if len(state) == 0 {
			delete(h.rooms, room)
		}
	}
	h.seq++
	u := PresenceUpdate{Seq: h.seq, RoomSeq: roomSeq, Room: room, Joins: joins, Leaves: leaves, Gone: gone}
	for _, w := range h.watchers {
		w(u)
	}
}

// ApplyPresence applies a presence diff to state as Phoenix does: each
// joining meta whose phx_ref state lacks is added, then each leaving meta's
// phx_ref is removed, and a user left with no metas is removed.
func ApplyPresence(state RoomPresence, joins, leaves map[string]codec.PresenceEntry) {
	for user, e := range joins {
		metas := state[user]
		for _, m := range e.Metas {
			if !slices.ContainsFunc(metas, func(x codec.PresenceMeta) bool { return x.Ref == m.Ref }) {
				metas = append(metas, m)
			}
		}
		state[user] = metas
	}
	for user, e := range leaves {
		metas, ok := state[user]
		if !ok {
			continue
		}
		metas = slices.DeleteFunc(slices.Clone(metas), func(x codec.PresenceMeta) bool {
			return slices.ContainsFunc(e.Metas, func(l codec.PresenceMeta) bool { return l.Ref == x.Ref })
		})
		if len(metas) == 0 {
			delete(state, user)
		} else {
			state[user] = metas
		}
	}
}

// snapshotLocked copies the presence of the rooms match accepts (all with a
// nil match). The hub's lock must be held.
func (h *presenceHub) snapshotLocked(match func(room string) bool) map[string]RoomPresence {
	out := make(map[string]RoomPresence)
	for room, state := range h.rooms {
		if match == nil || match(room) {
			c := make(RoomPresence, len(state))
			for user, metas := range state {
				c[user] = slices.Clone(metas)
			}
			out[room] = c
		}
	}
	return out
}

// PresenceSnapshot returns the presence of this node's rooms whose ids match
// accepts (every room with a nil match), as of the update numbered seq.
// Rooms with no one present are left out.
func (g *Registry) PresenceSnapshot(match func(room string) bool) (seq uint64, rooms map[string]RoomPresence) {
	h := &g.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq, h.snapshotLocked(match)
}

// WatchPresence calls start with the presence of every room of this node
// as of the update numbered seq, and then fn with every update after it, in
// order, until cancel is called. Both run under the lock that orders the
// node's updates (fn also under a room's): they must return at once, must
// not call the registry or its rooms, and must not modify what they are
// given, which others share.
func (g *Registry) WatchPresence(start func(seq uint64, rooms map[string]RoomPresence), fn func(PresenceUpdate)) (cancel func()) {
	h := &g.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchers == nil {
		h.watchers = make(map[int]func(PresenceUpdate))
	}
	id := h.nextID
	h.nextID++
	h.watchers[id] = fn
	start(h.seq, h.snapshotLocked(nil))
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.watchers, id)
	}
}
