// Package rooms is posecast's domain: the registry of live rooms and, in each
// room, its entity-component world, its pose table, its presence, its event
// stream and its tick. It knows nothing of QUIC: a room talks to its members
// through the Member interface, which transport implements, and keeps its
// world in a Store.
//
// A room's reliable state (world, presence, members) is guarded by one mutex
// and changes only on rare operations (join, leave, entity changes). Poses
// bypass it: each avatar owns a slot of the room's PoseTable, written
// without a mutex by its session and read by the tick, which sends what changed as
// datagrams encoded once for the whole room.
package rooms
