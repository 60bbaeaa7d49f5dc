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

// Store keeps rooms and their environment entities. Avatars never reach it.
// Implementations are safe for concurrent use; every method honours ctx.
type Store interface {
	// CreateRoom records info and, with it, the room's initial entities,
	// unless a room with info.ID exists. It reports whether it created the
	// room. Creation is atomic: a room is never seen without its entities.
	CreateRoom(ctx context.Context, info RoomInfo, entities map[string]Components) (created bool, err error)
	// Room returns one room, or ErrRoomNotFound.
	Room(ctx context.Context, id string) (RoomInfo, error)
	// Rooms lists every room, oldest first.
	Rooms(ctx context.Context) ([]RoomInfo, error)
	// DeleteRoom removes a room and its entities, or returns ErrRoomNotFound.
	DeleteRoom(ctx context.Context, id string) error
	// Entities returns every entity of a room with its components.
	Entities(ctx context.Context, room string) (map[string]Components, error)
	// EntitiesWith returns the entities of a room that have the named
	// component, with all their components.
	EntitiesWith(ctx context.Context, room, component string) (map[string]Components, error)
	// Apply applies changes to a room's entities in order, all or none.
	// It returns ErrRoomNotFound for a room that does not exist.
	Apply(ctx context.Context, room string, changes []Change) error
}
