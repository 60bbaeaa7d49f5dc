package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RoomView is a room as the rooms API shows it: what the store keeps, and
// what this node knows of it now.
type RoomView struct {
	RoomInfo
	// Live is true while the room runs on this node.
	Live bool
	// Present is how many users are in the room on this node.
	Present int
	// Entities are the room's environment entities, by id; nil in lists.
	// A live room's come from its world, which may be ahead of the store.
	Entities map[string]Components
}

// CreateRoom creates a room in the store with a generated id, the given
// display name and generated content (a spawn point and obstacles). The
// room starts on its first join, like any other. It returns ErrInvalid for
// a name that is blank, over MaxNameLength bytes or not printable.
func (g *Registry) CreateRoom(ctx context.Context, name string) (RoomView, error) {
	switch {
	case strings.TrimSpace(name) == "":
		return RoomView{}, fmt.Errorf("%w: name is required", ErrInvalid)
	case len(name) > MaxNameLength:
		return RoomView{}, fmt.Errorf("%w: name is %d bytes, limit %d", ErrInvalid, len(name), MaxNameLength)
	case !validName(name):
		return RoomView{}, fmt.Errorf("%w: name must be printable UTF-8", ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	entities := GenerateContent()
	for range 3 { // a random id that is taken is drawn again
		info := RoomInfo{ID: newID("r"), Name: name, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)} // as PostgreSQL keeps it
		created, err := g.store.CreateRoom(ctx, info, entities)
		if err != nil {
			return RoomView{}, &StoreError{Op: "create room", Err: err}
		}
		if created {
			return RoomView{RoomInfo: info, Entities: entities}, nil
		}
	}
	return RoomView{}, fmt.Errorf("%w: create room: no free id", ErrUnavailable)
}

// ListRooms returns up to limit of the rooms the store keeps, after the
// cursor and oldest first, with how many users are in each on this node.
func (g *Registry) ListRooms(ctx context.Context, after RoomCursor, limit int) ([]RoomView, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	infos, err := g.store.Rooms(ctx, after, limit)
	if err != nil {
		return nil, &StoreError{Op: "list rooms", Err: err}
	}
	out := make([]RoomView, len(infos))
	for i, info := range infos {
		out[i] = RoomView{RoomInfo: info}
		if r := g.Room(info.ID); r != nil {
			out[i].Live, out[i].Present = true, r.Stats().Users
		}
	}
	return out, nil
}

// DescribeRoom returns one room with its environment entities, or
// ErrRoomNotFound.
func (g *Registry) DescribeRoom(ctx context.Context, id string) (RoomView, error) {
	if !ValidID(id) {
		return RoomView{}, fmt.Errorf("%w: room id %q", ErrInvalid, id)
	}
	if r := g.Room(id); r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.closed {
			entities := make(map[string]Components, len(r.entities))
			for eid, c := range r.entities {
				entities[eid] = copyComponents(c)
			}
			return RoomView{RoomInfo: r.info, Live: true, Present: len(r.users), Entities: entities}, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	info, err := g.store.Room(ctx, id)
	if err == nil {
		var entities map[string]Components
		if entities, err = g.store.Entities(ctx, id); err == nil {
			return RoomView{RoomInfo: info, Entities: entities}, nil
		}
	}
	if errors.Is(err, ErrRoomNotFound) {
		return RoomView{}, fmt.Errorf("%w: %s", ErrRoomNotFound, id)
	}
	return RoomView{}, &StoreError{Op: "room " + id, Err: err}
}

// DeleteRoom removes a room and its entities from the store. A room with
// users in it (held devices of dropped users count) is not deleted:
// ErrRoomBusy. A live room that is empty stops first, and its last entity
// changes are written before the room is deleted, so none of them lands in
// a room of the same id created after. Joins to the id wait until the
// delete is done, then start a new room. It returns ErrRoomNotFound for a
// room the store does not hold. In a cluster the node claims the room for
// the time of the delete, so that no node starts it meanwhile; a room that
// another node runs is not deleted here: *ElsewhereError.
func (g *Registry) DeleteRoom(ctx context.Context, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: room id %q", ErrInvalid, id)
	}
	if g.cfg.Placement != nil {
		c, err := g.claim(ctx, id)
		if err != nil {
			return err
		}
		g.mu.Lock()
		if g.claims[id] == nil {
			g.claims[id] = &heldClaim{claim: c}
		}
		g.mu.Unlock()
		defer g.releaseUnlessLive(id)
	}
	var prev *Room
	var done chan struct{}
	for done == nil {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return ErrClosed
		}
		var wait <-chan struct{}
		if d := g.deleting[id]; d != nil {
			wait = d // another delete of it is under way
		} else if r := g.rooms[id]; r != nil {
			select {
			case <-r.ready:
				if err := g.stopEmptyLocked(r); err != nil {
					g.mu.Unlock()
					return err
				}
			default:
				wait = r.ready // starting: see how that ends
			}
		}
		if wait == nil {
			done = make(chan struct{})
			g.deleting[id] = done
			prev = g.draining[id]
		}
		g.mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	defer func() {
		g.mu.Lock()
		delete(g.deleting, id)
		g.mu.Unlock()
		close(done)
	}()
	if prev != nil {
		select {
		case <-prev.synced:
		case <-ctx.Done():
			return fmt.Errorf("%w: room %s is still writing its last changes: %w", ErrUnavailable, id, ctx.Err())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	err := g.store.DeleteRoom(ctx, id)
	switch {
	case errors.Is(err, ErrRoomNotFound):
		return fmt.Errorf("%w: %s", ErrRoomNotFound, id)
	case err != nil:
		return &StoreError{Op: "delete room " + id, Err: err}
	}
	g.cfg.Logger.Info("room deleted", "room", id)
	return nil
}

// stopEmptyLocked stops a live room that has loaded, for its deletion,
// unless users are in it. The registry's lock must be held.
func (g *Registry) stopEmptyLocked(r *Room) error {
	r.mu.Lock()
	n := len(r.users)
	if n == 0 {
		r.closeLocked()
	}
	r.mu.Unlock()
	if n > 0 {
		return fmt.Errorf("%w: %d users are in room %s", ErrRoomBusy, n, r.id)
	}
	delete(g.rooms, r.id)
	g.draining[r.id] = r
	r.stopOnce.Do(func() { close(r.stop) })
	g.cfg.Logger.Info("room stopped", "room", r.id, "reason", "deleted")
	return nil
}

// PendingChanges returns how many entity changes of this node's rooms,
// live or stopping, wait to be written to the store.
func (g *Registry) PendingChanges() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, r := range g.rooms {
		n += r.syncer.Pending()
	}
	for _, r := range g.draining {
		n += r.syncer.Pending()
	}
	return n
}
