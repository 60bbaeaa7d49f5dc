package rooms

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/posecast/posecast/codec"
)

// MaxRoomSize is the most avatars a room can be configured for. Their poses
// fit in the 255 datagrams a tick can number: 4096 records of at most 46
// bytes, 21 to a datagram of codec.MinDatagramSize, need 196.
const MaxRoomSize = 4096

// Config tunes every room of a Registry. The zero value of each field means
// its default.
type Config struct {
	// Tick is how often a room sends what changed. Defaults to 200ms.
	Tick time.Duration
	// RepeatTicks is how many more ticks an avatar that stopped moving is sent
	// again, so that receivers that lost a datagram still converge. Defaults
	// to 3.
	RepeatTicks int
	// Heartbeat is how often a room with nothing to send sends an empty pose
	// update, so receivers learn the latest sequence number and detect loss.
	// Defaults to 1s.
	Heartbeat time.Duration
	// StaleAfter is how long an avatar's poses may stop arriving before the
	// room marks it stale. Defaults to 1s.
	StaleAfter time.Duration
	// ReconnectGrace is how long after a session was last heard from its user
	// keeps their avatar and presence when it ends without leaving, so that
	// a reconnect takes them over without a leave and a join. Defaults to
	// 15s: a browser notices a dead connection after the QUIC idle timeout
	// (5s) and its first retry follows within a second, well inside it.
	ReconnectGrace time.Duration
	// EmptyGrace is how long a room with no one in it lives on before it
	// stops. Defaults to 30s.
	EmptyGrace time.Duration
	// MaxMembers is the number of avatars a room holds: its pose table's
	// slots. Defaults to 256.
	MaxMembers int
	// MaxDevices is the number of sessions one user may join a room with.
	// Defaults to 8.
	MaxDevices int
	// MaxEntities bounds a room's environment entities. Defaults to 10000.
	MaxEntities int
	// MaxWorldBytes bounds the size of a room's environment entities
	// together, as sent in entities_state. Defaults to 1 MiB.
	MaxWorldBytes int
	// MaxPendingChanges bounds the entity changes waiting to be written to
	// the store; past it, new changes are refused with ErrStoreBacklog.
	// Defaults to 10000.
	MaxPendingChanges int
	// MaxPendingBytes bounds the size of the entity changes waiting for the
	// store across every room of the node, as componentsSize counts; past
	// it, new changes are refused with ErrStoreBacklog. Defaults to 64 MiB.
	MaxPendingBytes int
	// StoreTimeout bounds each store call. Defaults to 5s.
	StoreTimeout time.Duration
	// SyncInterval is the least time between the starts of two writes of a
	// room's entity changes to the store: changes that come faster wait and
	// go together, in order, in one batch (one transaction). A change after
	// a quiet spell is written at once, and a full batch (500 changes) does
	// not wait. Defaults to Tick.
	SyncInterval time.Duration
	// MemberBytes is how many bytes a second one member's events and entity
	// changes may make the room send to every other member, in bursts of
	// four seconds' worth; past it they are refused with ErrRateLimited.
	// Defaults to 64 KiB.
	MemberBytes int
	// RoomBytes is the same for all the members of a room together, so that
	// however many send, a receiver's backlog grows by at most four
	// seconds' worth. Defaults to 256 KiB.
	RoomBytes int
	// MaxRooms bounds the live rooms of a node; joins that would start one
	// more are refused. Defaults to 10000.
	MaxRooms int
	// Placement, when set, makes the registry one node of a cluster: a room
	// starts here only once this node holds its claim, and the store fences
	// the room's writes with the claim's epoch. Without it the node runs
	// every room it is asked for.
	Placement Placement
	// OnTick, when set, is told of each tick how late it began (how much
	// longer than Tick the time since the room's previous tick was: a node
	// short of CPU starts ticks late) and how long its work took. It runs in
	// the tick goroutine and must return quickly.
	OnTick func(late, work time.Duration)
	// FetchPresence, when set, adds to the presence entries a room sends
	// its members (the presence_state of a join, each tick's
	// presence_diff), in one batch per message, as Phoenix.Presence's
	// fetch/2 does: it is given the room and the entries by user and may
	// set each entry's Extra (entries[user] = e), which goes out beside the
	// metas. It runs under the room's lock, on its tick and its joins: it
	// must be quick (look users up in a cache, not a database per call)
	// and must not call the room.
	FetchPresence func(room string, entries map[string]codec.PresenceEntry)
	// Interest is how rooms choose which avatars each member gets at every
	// tick (Room.SetInterest changes it for one room). By default a member
	// gets the avatars within 5 m and its 24 nearest at every tick and the
	// others every 4th tick.
	Interest Interest
	// Logger receives the rooms' logs. Defaults to slog.Default().
	Logger *slog.Logger

	interest *interestRule // Interest, in the tick's units
}

// withDefaults returns c with defaults filled in, or an error for values
// that make no sense.
func (c Config) withDefaults() (Config, error) {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setInt := func(n *int, def int) {
		if *n == 0 {
			*n = def
		}
	}
	setDur(&c.Tick, 200*time.Millisecond)
	setInt(&c.RepeatTicks, 3)
	setDur(&c.Heartbeat, time.Second)
	setDur(&c.StaleAfter, time.Second)
	setDur(&c.ReconnectGrace, 15*time.Second)
	setDur(&c.EmptyGrace, 30*time.Second)
	setInt(&c.MaxMembers, 256)
	setInt(&c.MaxDevices, 8)
	setInt(&c.MaxEntities, 10000)
	setInt(&c.MaxWorldBytes, 1<<20)
	setInt(&c.MaxPendingChanges, 10000)
	setInt(&c.MaxPendingBytes, 64<<20)
	setDur(&c.StoreTimeout, 5*time.Second)
	setDur(&c.SyncInterval, c.Tick)
	setInt(&c.MaxRooms, 10000)
	setInt(&c.MemberBytes, 64<<10)
	setInt(&c.RoomBytes, 256<<10)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Tick < time.Millisecond:
		return c, fmt.Errorf("rooms: tick %v is under 1ms", c.Tick)
	case c.RepeatTicks < 0:
		return c, fmt.Errorf("rooms: negative repeat ticks %d", c.RepeatTicks)
	case c.MaxMembers < 1 || c.MaxMembers > MaxRoomSize:
		return c, fmt.Errorf("rooms: max members %d not in 1..%d", c.MaxMembers, MaxRoomSize)
	case c.Heartbeat < 0 || c.StaleAfter < 0 || c.ReconnectGrace < 0 || c.EmptyGrace < 0 || c.StoreTimeout < 0 || c.SyncInterval < 0:
		return c, fmt.Errorf("rooms: negative duration in %+v", c)
	case c.MaxDevices < 1 || c.MaxEntities < 1 || c.MaxPendingChanges < 1 || c.MaxPendingBytes < 1 || c.MaxWorldBytes < 1 || c.MemberBytes < 1 || c.RoomBytes < 1:
		return c, fmt.Errorf("rooms: limits must be positive")
	}
	rule, err := newInterestRule(c.Interest, &c)
	if err != nil {
		return c, err
	}
	c.Interest, c.interest = rule.Interest, rule
	return c, nil
}

// ticks converts a duration to a whole number of ticks, at least one.
func (c *Config) ticks(d time.Duration) uint64 {
	return max(1, uint64((d+c.Tick-1)/c.Tick))
}

// slotQuarantine is how many ticks a freed slot rests before another avatar
// gets it, so that late datagrams about the old avatar are long gone.
func (c *Config) slotQuarantine() uint64 {
	return max(c.ticks(2*time.Second), uint64(c.RepeatTicks)+2)
}

// maxDatagram clamps a member's datagram size to what the tick can use.
func maxDatagram(n int) int {
	return max(codec.MinDatagramSize, min(codec.MaxDatagramSize, n))
}
