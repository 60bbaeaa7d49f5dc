package rooms

import "github.com/posecast/posecast/codec"

// MetasChange is one change of a room's presence as HandleMetas hands it
// on, the shape of Phoenix.Presence's handle_metas: what joined and what
// left, by user, and the metas each of those users has after the change.
type MetasChange struct {
	Room          string
	Joins, Leaves map[string]codec.PresenceEntry
	// Metas holds, for every user in Joins or Leaves, the user's metas
	// after the change, one per device; a user who left the room has none.
	Metas map[string][]codec.PresenceMeta
}

// HandleMetas calls fn with every change of presence in this node's rooms,
// in order per room, until cancel is called: an application's hook for
// presence (updating a user's status elsewhere, counting who is where). A
// room that stops with people present shows them all leaving. fn runs
// under the lock that orders presence updates: it must return quickly,
// must not call the registry or its rooms, and must not modify what it is
// given; hand slow work to a goroutine of its own.
func (g *Registry) HandleMetas(fn func(MetasChange)) (cancel func()) {
	var state map[string]RoomPresence // by room; only the callbacks use it
	return g.WatchPresence(func(_ uint64, rooms map[string]RoomPresence) {
		state = rooms
	}, func(u PresenceUpdate) {
		joins, leaves := u.Joins, u.Leaves
		room := state[u.Room]
		if u.Gone {
			joins, leaves = nil, make(map[string]codec.PresenceEntry, len(room))
			for user, metas := range room {
				leaves[user] = codec.PresenceEntry{Metas: metas}
			}
			delete(state, u.Room)
			room = nil
		} else {
			if room == nil {
				room = make(RoomPresence)
				state[u.Room] = room
			}
			ApplyPresence(room, joins, leaves)
			if len(room) == 0 {
				delete(state, u.Room)
			}
		}
		metas := make(map[string][]codec.PresenceMeta, len(joins)+len(leaves))
		for _, touched := range []map[string]codec.PresenceEntry{joins, leaves} {
			for user := range touched {
				metas[user] = room[user]
			}
		}
		fn(MetasChange{Room: u.Room, Joins: joins, Leaves: leaves, Metas: metas})
	})
}
