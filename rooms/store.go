package rooms

import (
	"context"
	"time"

	"github.com/posecast/posecast/codec"
)

// Components maps component names to JSON-compatible values.
type Components = codec.Components

// RoomInfo describes a room as the store keeps it.
type RoomInfo struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// Change is one change to one environment entity. Exactly one of Delete, or
// a non-empty Set or Unset, is meaningful: Delete removes the entity and all
// its components; otherwise Set upserts components (creating the entity if
// it has none) and Unset removes components. An entity with no components
// left does not exist.
type Change struct {
	Entity string
	Set    Components
	Unset  []string
	Delete bool
}

// RoomCursor is a place in the list of rooms, which is ordered by creation
// time and then by id: the rooms after it come after the room created at
// CreatedAt with ID. The zero value is the start of the list.
type RoomCursor struct {
	CreatedAt time.Time
	ID        string
}

// CursorAfter returns the cursor just past info.
func CursorAfter(info RoomInfo) RoomCursor { return RoomCursor{CreatedAt: info.CreatedAt, ID: info.ID} }

// after reports whether info comes after c in the list of rooms.
func (c RoomCursor) after(info RoomInfo) bool {
	if d := info.CreatedAt.Compare(c.CreatedAt); d != 0 {
		return d > 0
	}
	return info.ID > c.ID
}

// Store keeps rooms and their environment entities. Avatars never reach it.
// Implementations are safe for concurrent use; every method honours ctx.
type Store interface {
	// CreateRoom records info and, with it, the room's initial entities,
	// unless a room with info.ID exists. It reports whether it created the
	// room. Creation is atomic: a room is never seen without its entities.
	CreateRoom(ctx context.Context, info RoomInfo, entities map[string]Components) (created bool, err error)
	// Room returns one room, or ErrRoomNotFound.
	Room(ctx context.Context, id string) (RoomInfo, error)
	// Rooms lists up to limit rooms after the cursor, in the order of their
	// creation (then of their ids); the zero cursor starts at the first.
	Rooms(ctx context.Context, after RoomCursor, limit int) ([]RoomInfo, error)
	// DeleteRoom removes a room and its entities, or returns ErrRoomNotFound.
	DeleteRoom(ctx context.Context, id string) error
	// Entities returns every entity of a room with its components.
	Entities(ctx context.Context, room string) (map[string]Components, error)
	// EntitiesWith returns the entities of a room that have the named
	// component, with all their components.
	EntitiesWith(ctx context.Context, room, component string) (map[string]Components, error)
	// Apply applies changes to a room's entities in order, all or none, for
	// the holder of claim. It returns ErrRoomNotFound for a room that does
	// not exist, and ErrFenced, writing nothing, unless claim is the one
	// that fenced the room last (see Fence). The zero Claim is a writer
	// without claims (a node on its own) and is never refused.
	Apply(ctx context.Context, room string, claim Claim, changes []Change) error
	// Fence records that claim (not zero) owns the room from now on: Apply
	// calls of other claims fail with ErrFenced, and an Apply in flight when
	// Fence is called has either committed before it returns or is refused.
	// It returns ErrFenced when a greater claim fenced the room already,
	// and ErrRoomNotFound for a room that does not exist.
	Fence(ctx context.Context, room string, claim Claim) error
}
