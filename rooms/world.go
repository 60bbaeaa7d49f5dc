package rooms

import (
	"fmt"

	"github.com/posecast/posecast/codec"
)

// entitiesDiff collects what changed in a room's world between two ticks.
// An entity id is in at most one of creates, updates and deletes, so
// receivers may apply them in any order: a create after a delete replaces
// the delete, a delete after a create or update drops them, and an update of
// an entity created since the last diff merges into the create.
type entitiesDiff struct {
	creates map[string]Components
	updates map[string]Components
	deletes map[string]bool
}

// record is the diff builder: a listener on the room's event stream.
func (d *entitiesDiff) record(ev Event) {
	switch ev.Name {
	case EventEntityCreated:
		if d.creates == nil {
			d.creates = make(map[string]Components)
		}
		delete(d.deletes, ev.Entity)
		delete(d.updates, ev.Entity)
		d.creates[ev.Entity] = copyComponents(ev.Data.(Components))
	case EventEntityUpdated:
		changed := ev.Data.(Components)
		if c, ok := d.creates[ev.Entity]; ok {
			for k, v := range changed {
				if v == nil {
					delete(c, k)
				} else {
					c[k] = copyValue(v)
				}
			}
			return
		}
		if d.updates == nil {
			d.updates = make(map[string]Components)
		}
		u := d.updates[ev.Entity]
		if u == nil {
			u = make(Components, len(changed))
			d.updates[ev.Entity] = u
		}
		for k, v := range changed {
			u[k] = copyValue(v)
		}
	case EventEntityDeleted:
		delete(d.creates, ev.Entity)
		delete(d.updates, ev.Entity)
		if d.deletes == nil {
			d.deletes = make(map[string]bool)
		}
		d.deletes[ev.Entity] = true
	}
}

func (d *entitiesDiff) empty() bool {
	return len(d.creates) == 0 && len(d.updates) == 0 && len(d.deletes) == 0
}

// avatarComponents returns the components of user u's avatar entity.
func avatarComponents(u *user) Components {
	return Components{ComponentAvatar: true, "user": u.id, "name": u.name, "slot": u.slot}
}

// withPoseLocked returns c with the avatar's current position and rotation
// from the pose table added, for snapshots and creates: datagrams carry the
// rest. The room's lock must be held.
func (r *Room) withPoseLocked(c Components, slot int) Components {
	rec, v := r.table.Read(slot, nil)
	if v == 0 {
		return c
	}
	var p codec.Pose
	if err := codec.ParsePose(rec, &p); err != nil {
		return c
	}
	out := make(Components, len(c)+3)
	for k, v := range c {
		out[k] = v
	}
	out["position"] = p.Head.Position[:]
	out["rotation"] = p.Head.Rotation[:]
	out["pose_time"] = p.Time
	return out
}

// entitiesStateLocked returns the whole world with avatars at their current
// poses, for member m. The room's lock must be held.
func (r *Room) entitiesStateLocked(m *Membership) *codec.EntitiesState {
	// The environment is encoded once per change, not per join or resync:
	// a big world costs its encoding once.
	if r.encodedWorld == nil {
		b, err := codec.AppendEntities(make([]byte, 0, r.worldBytes+len(r.entities)*16), r.entities)
		if err != nil {
			r.log.Error("encode the world", "err", err)
		}
		r.encodedWorld = b
	}
	avatars := make(map[string]Components, len(r.users))
	for id, u := range r.users {
		avatars[id] = r.withPoseLocked(avatarComponents(u), u.slot)
	}
	return &codec.EntitiesState{Seq: m.seq.Load(), Entities: avatars, Encoded: r.encodedWorld, EncodedCount: len(r.entities)}
}

// takeDiffLocked returns the pending entities diff as a message, avatars in
// creates at their current poses, and resets it. The room's lock must be held.
func (r *Room) takeDiffLocked() *codec.EntitiesDiff {
	d := &r.diff
	msg := &codec.EntitiesDiff{
		Creates: make(map[string]Components, len(d.creates)),
		Updates: d.updates,
		Deletes: make([]string, 0, len(d.deletes)),
	}
	if msg.Updates == nil {
		msg.Updates = map[string]Components{}
	}
	for id, c := range d.creates {
		if u, ok := r.users[id]; ok {
			c = r.withPoseLocked(c, u.slot)
		}
		msg.Creates[id] = c
	}
	for id := range d.deletes {
		msg.Deletes = append(msg.Deletes, id)
	}
	*d = entitiesDiff{}
	return msg
}

// createEntityLocked adds an environment entity. The room's lock must be held.
func (r *Room) createEntityLocked(by string, c Components, stored func(error)) (string, error) {
	if err := checkComponents(c, false); err != nil {
		return "", err
	}
	if len(r.entities) >= r.cfg.MaxEntities {
		return "", fmt.Errorf("%w: room holds %d entities", ErrInvalid, len(r.entities))
	}
	size := componentsSize(c)
	if err := r.checkSizeLocked(size, size); err != nil {
		return "", err
	}
	id := newID("e")
	// The syncer and the listeners share a copy that nothing changes: the
	// caller may reuse c, and updates change the room's own copy in place.
	c = copyComponents(c)
	if err := r.syncer.add(Change{Entity: id, Set: c}, stored); err != nil {
		return "", err
	}
	r.entities[id] = copyComponents(c)
	r.worldBytes += size
	r.encodedWorld = nil
	r.emitLocked(Event{Name: EventEntityCreated, User: by, Entity: id, Data: c})
	return id, nil
}

// updateEntityLocked merges components into an environment entity; nil
// values remove components. The room's lock must be held.
func (r *Room) updateEntityLocked(by, id string, c Components, stored func(error)) error {
	cur, err := r.environmentEntityLocked(id)
	if err != nil {
		return err
	}
	if err := checkComponents(c, true); err != nil {
		return err
	}
	ch := Change{Entity: id, Set: Components{}}
	remaining := len(cur)
	before := componentsSize(cur)
	delta := 0
	for k, v := range c {
		old, had := cur[k]
		if had {
			delta -= len(k) + valueSize(old)
		}
		if v != nil {
			delta += len(k) + valueSize(v)
		}
		switch {
		case v == nil && had:
			ch.Unset = append(ch.Unset, k)
			remaining--
		case v != nil:
			ch.Set[k] = copyValue(v) // the syncer reads it later; the caller may reuse v
			if !had {
				remaining++
			}
		}
	}
	if remaining == 0 {
		return r.deleteEntityLocked(by, id, stored)
	}
	if remaining > MaxComponents {
		return fmt.Errorf("%w: entity would have more than %d components", ErrInvalid, MaxComponents)
	}
	if err := r.checkSizeLocked(before+delta, delta); err != nil {
		return err
	}
	if err := r.syncer.add(ch, stored); err != nil {
		return err
	}
	applyChange(r.entities, ch)
	r.worldBytes += delta
	r.encodedWorld = nil
	changed := make(Components, len(ch.Set)+len(ch.Unset))
	for k := range ch.Set {
		changed[k] = r.entities[id][k]
	}
	for _, k := range ch.Unset {
		changed[k] = nil
	}
	r.emitLocked(Event{Name: EventEntityUpdated, User: by, Entity: id, Data: changed})
	return nil
}

// deleteEntityLocked removes an environment entity. The room's lock must be held.
func (r *Room) deleteEntityLocked(by, id string, stored func(error)) error {
	cur, err := r.environmentEntityLocked(id)
	if err != nil {
		return err
	}
	if err := r.syncer.add(Change{Entity: id, Delete: true}, stored); err != nil {
		return err
	}
	r.worldBytes -= componentsSize(cur)
	delete(r.entities, id)
	r.encodedWorld = nil
	r.emitLocked(Event{Name: EventEntityDeleted, User: by, Entity: id})
	return nil
}

// checkSizeLocked refuses a change that would make an entity larger than
// MaxEntityBytes or grow the world past Config.MaxWorldBytes: every joiner
// receives the whole world, and every member each tick's changes.
// The room's lock must be held.
func (r *Room) checkSizeLocked(entity, growth int) error {
	if entity > MaxEntityBytes {
		return fmt.Errorf("%w: entity of about %d bytes, limit %d", ErrInvalid, entity, MaxEntityBytes)
	}
	if growth > 0 && r.worldBytes+growth > r.cfg.MaxWorldBytes {
		return fmt.Errorf("%w: the room's world would pass %d bytes", ErrInvalid, r.cfg.MaxWorldBytes)
	}
	return nil
}

func (r *Room) environmentEntityLocked(id string) (Components, error) {
	if _, ok := r.users[id]; ok {
		return nil, fmt.Errorf("%w: %q is an avatar", ErrForbidden, id)
	}
	c, ok := r.entities[id]
	if !ok {
		return nil, fmt.Errorf("%w: entity %q", ErrNotFound, id)
	}
	return c, nil
}
