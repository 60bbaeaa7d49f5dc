package rooms

import "time"

// Events a room publishes on its stream besides the user_* events of codec.
// EventUserMoved names what the pose table carries; it is never published
// per pose.
const (
	EventUserMoved     = "user_moved"
	EventEntityCreated = "entity_created"
	EventEntityUpdated = "entity_updated"
	EventEntityDeleted = "entity_deleted"
)

// Event is something that happened in a room: a user joined, left, went
// stale or recovered; an entity was created, updated or deleted; or a member
// published an application event such as user_grabbed or door_opened.
type Event struct {
	Name string
	// Room is the room's id.
	Room string
	// User is who caused it; empty for the room itself.
	User string
	// Entity is the entity it concerns, if any.
	Entity string
	// Data is the event's payload. For entity_created it is the components;
	// for entity_updated the changed components, nil for a removed one. It is
	// shared between listeners and must not be modified.
	Data any
	// Avatar is true when Entity is an avatar, which only lives in memory.
	Avatar bool
	At     time.Time
	// from is the membership that published an application event; relays
	// skip it.
	from *Membership
	// self is the device a server event about its user came from (a
	// join's), which is sent it at once; the others get it with the tick.
	self *Membership
}

// Listener receives a room's events in order. It runs with the room's lock
// held: it must not block and must not call the room.
type Listener func(Event)

// Subscribe adds l to the room's event stream and returns a function that
// removes it.
func (r *Room) Subscribe(l Listener) (cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextListener
	r.nextListener++
	r.listeners = append(r.listeners, listenerEntry{id, l})
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, e := range r.listeners {
			if e.id == id {
				r.listeners = append(r.listeners[:i:i], r.listeners[i+1:]...)
				return
			}
		}
	}
}

type listenerEntry struct {
	id int
	l  Listener
}

// emitLocked publishes ev to every listener.
// The room's lock must be held.
func (r *Room) emitLocked(ev Event) {
	ev.Room = r.id
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	for _, e := range r.listeners {
		e.l(ev)
	}
}
