package rooms

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// DefaultMaxMemoryRooms is how many rooms a MemoryStore holds unless told.
const DefaultMaxMemoryRooms = 100000

// MemoryStore is a Store in memory: the embedded default, for one node whose
// rooms need not outlive it. The zero value is ready to use.
type MemoryStore struct {
	// MaxRooms bounds the rooms it holds: past it CreateRoom fails, and so
	// do joins of new rooms, until rooms are deleted. Defaults to
	// DefaultMaxMemoryRooms.
	MaxRooms int

	mu    sync.Mutex // guards the following
	rooms map[string]*memRoom
	// order is every room in the order of the list, for pages that cost
	// the page and not the whole list.
	order []RoomInfo
}

// compareRooms orders rooms as the list does: by creation time, then id.
func compareRooms(a, b RoomInfo) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

type memRoom struct {
	info     RoomInfo
	entities map[string]Components
	fenced   Claim // the newest claim that fenced the room
}

var _ Store = (*MemoryStore)(nil)

// CreateRoom implements Store.
func (s *MemoryStore) CreateRoom(ctx context.Context, info RoomInfo, entities map[string]Components) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rooms[info.ID]; ok {
		return false, nil
	}
	if limit := cmp.Or(s.MaxRooms, DefaultMaxMemoryRooms); len(s.rooms) >= limit {
		return false, fmt.Errorf("the in-memory store holds %d rooms, its most; delete some, or keep rooms in PostgreSQL", limit)
	}
	if s.rooms == nil {
		s.rooms = make(map[string]*memRoom)
	}
	at, _ := slices.BinarySearchFunc(s.order, info, compareRooms)
	s.order = slices.Insert(s.order, at, info)
	r := &memRoom{info: info, entities: make(map[string]Components, len(entities))}
	for id, c := range entities {
		if len(c) > 0 {
			r.entities[id] = copyComponents(c)
		}
	}
	s.rooms[info.ID] = r
	return true, nil
}

// Room implements Store.
func (s *MemoryStore) Room(ctx context.Context, id string) (RoomInfo, error) {
	if err := ctx.Err(); err != nil {
		return RoomInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[id]
	if !ok {
		return RoomInfo{}, ErrRoomNotFound
	}
	return r.info, nil
}

// Rooms implements Store.
func (s *MemoryStore) Rooms(ctx context.Context, after RoomCursor, limit int) ([]RoomInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from, _ := slices.BinarySearchFunc(s.order, after, func(info RoomInfo, c RoomCursor) int {
		if c.after(info) {
			return 1
		}
		return -1
	})
	page := s.order[from:]
	return slices.Clone(page[:min(len(page), max(limit, 0))]), nil
}

// DeleteRoom implements Store.
func (s *MemoryStore) DeleteRoom(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[id]
	if !ok {
		return ErrRoomNotFound
	}
	delete(s.rooms, id)
	if at, found := slices.BinarySearchFunc(s.order, r.info, compareRooms); found {
		s.order = slices.Delete(s.order, at, at+1)
	}
	return nil
}

// Entities implements Store.
func (s *MemoryStore) Entities(ctx context.Context, room string) (map[string]Components, error) {
	return s.entities(ctx, room, "")
}

// EntitiesWith implements Store.
func (s *MemoryStore) EntitiesWith(ctx context.Context, room, component string) (map[string]Components, error) {
	return s.entities(ctx, room, component)
}

func (s *MemoryStore) entities(ctx context.Context, room, component string) (map[string]Components, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[room]
	if !ok {
		return nil, ErrRoomNotFound
	}
	out := make(map[string]Components)
	for id, c := range r.entities {
		if _, has := c[component]; component == "" || has {
			out[id] = copyComponents(c)
		}
	}
	return out, nil
}

// Apply implements Store.
func (s *MemoryStore) Apply(ctx context.Context, room string, claim Claim, changes []Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[room]
	if !ok {
		return ErrRoomNotFound
	}
	if !claim.IsZero() && claim != r.fenced {
		return ErrFenced
	}
	for _, ch := range changes {
		applyChange(r.entities, ch)
	}
	return nil
}

// Fence implements Store.
func (s *MemoryStore) Fence(ctx context.Context, room string, claim Claim) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[room]
	if !ok {
		return ErrRoomNotFound
	}
	if claim.Before(r.fenced) {
		return ErrFenced
	}
	r.fenced = claim
	return nil
}

// applyChange applies ch to entities, copying the values it keeps.
func applyChange(entities map[string]Components, ch Change) {
	if ch.Delete {
		delete(entities, ch.Entity)
		return
	}
	c := entities[ch.Entity]
	if c == nil {
		c = make(Components, len(ch.Set))
	}
	for name, v := range ch.Set {
		c[name] = copyValue(v)
	}
	for _, name := range ch.Unset {
		delete(c, name)
	}
	if len(c) == 0 {
		delete(entities, ch.Entity)
		return
	}
	entities[ch.Entity] = c
}

func copyComponents(c Components) Components {
	out := make(Components, len(c))
	for k, v := range c {
		out[k] = copyValue(v)
	}
	return out
}

// copyValue deep-copies the maps and slices of a decoded value, so that what
// a store keeps is never shared with a caller.
func copyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = copyValue(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = copyValue(e)
		}
		return s
	case []float64:
		return slices.Clone(v)
	}
	return v
}
