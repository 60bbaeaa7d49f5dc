package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posecast/posecast/codec"
)

// Member is how a room reaches one session. Transport implements it. Every
// method must return at once: a room never waits on a member's network.
type Member interface {
	// SendPoses queues pose update seq for the member: its datagram p of
	// len(parts) is codec.AppendPoseUpdate(seq, p, len(parts), parts[p]).
	// No parts is a heartbeat. parts and the record runs in them are shared
	// with other members and must not be modified. A member that falls
	// behind drops whole updates, never a part of one (unless its path's
	// datagram limit falls while it sends one: the parts that no longer
	// fit are dropped).
	SendPoses(seq uint32, parts [][][]byte)
	// SendFrame queues a framed control message (see codec.AppendFrame) on
	// the member's reliable stream. frame is shared and must not be
	// modified. A member that cannot keep up closes itself.
	SendFrame(frame []byte)
	// MaxDatagramSize returns the largest datagram the member can take now.
	MaxDatagramSize() int
	// Close ends the member's session: goodbye is its last message.
	Close(goodbye *codec.Goodbye)
}

// JoinRequest is what a session asks for when it joins a room.
type JoinRequest struct {
	// Ref is the client's request reference, repeated in the joined reply.
	Ref uint32
	// User is the user id; empty makes one up.
	User string
	// Name is the display name; empty uses the user id.
	Name string
	// Device names the device, so a reconnect takes over its own presence.
	Device string
	// Meta is application metadata for the presence meta.
	Meta map[string]any
	// Token is handed back in the joined reply: a join token for this user
	// in this room, when the server makes them (development mode).
	Token string
}

// user is a present user: one avatar, one or more devices.
type user struct {
	id   string
	name string
	slot int
	// owner is the user's owner number of the slot (PoseTable.Claim).
	owner uint64
	// devices are the user's memberships in the order they joined, held
	// ones (dropped, within their reconnect grace) included.
	devices []*Membership
	// driver is the device whose poses move the avatar.
	driver *Membership
	stale  bool
	// heardAt is when the avatar was last heard from (Unix nanoseconds):
	// its driver's last pose, or the join that gave it its driver.
	heardAt atomic.Int64
}

// roster is what the tick needs without the lock: who to send to and which
// slots are in use. It is replaced, never changed.
type roster struct {
	members []*Membership
	slots   []int
}

type slotState struct {
	used     bool
	released uint64 // tick at which it was last freed
}

// slotTick is the tick's memory of a slot. Only the tick goroutine uses it.
type slotTick struct {
	version uint64
	changed uint64 // tick at which version last moved
	// The record of that version, and its head's place on the floor (mm).
	rec    [codec.MaxPoseSize]byte
	recLen int
	x, z   int32
	// farRec is the record as far members were last sent it, as of tick
	// farChanged (Interest.FarMove and FarTurn).
	farRec     [codec.MaxPoseSize]byte
	farLen     int
	farChanged uint64
}

// Room is one live room: its world, members, presence, pose table and tick.
// Rooms are made by a Registry.
type Room struct {
	id       string
	reg      *Registry
	cfg      *Config
	log      *slog.Logger
	table    *PoseTable
	drivers  []atomic.Pointer[Membership] // by slot: whose poses move it
	syncer   *syncer
	ready    chan struct{} // closed once loaded
	loadErr  error         // set before ready is closed
	stop     chan struct{} // closed when the room stops
	stopOnce sync.Once
	synced   chan struct{} // closed when its last changes are in the store
	claim    Claim         // this node's claim on the room, with a Placement
	budget   byteBudget    // what members may make it send reliably; guarded by mu

	tickCount atomic.Uint64 // ticks so far
	roster    atomic.Pointer[roster]
	interest  atomic.Pointer[interestRule]

	mu           sync.Mutex // guards the following
	closed       bool
	info         RoomInfo
	entities     map[string]Components // environment entities
	worldBytes   int                   // their size, as componentsSize counts
	spawnID      string
	users        map[string]*user
	slots        []slotState
	diff         entitiesDiff
	presence     presenceDiff
	listeners    []listenerEntry
	nextListener int
	emptySince   time.Time
	// encodedWorld is the environment as entities_state carries it; nil
	// after a change, until the next state is built.
	encodedWorld []byte
	// heldEvents are the server's events about users, sent with the tick.
	heldEvents []heldEvent
	// resyncs are the members whose resync waits for its turn (one a
	// second each), answered by the tick.
	resyncs map[*Membership]struct{}

	// nextFarPhase spreads members' far ticks over the ticks.
	nextFarPhase uint64

	// Used by the tick goroutine only.
	slotTicks []slotTick
	grid      tickGrid
}

func newRoom(reg *Registry, id string) *Room {
	cfg := &reg.cfg
	r := &Room{
		id:        id,
		reg:       reg,
		cfg:       cfg,
		log:       cfg.Logger.With("room", id),
		table:     NewPoseTable(cfg.MaxMembers),
		drivers:   make([]atomic.Pointer[Membership], cfg.MaxMembers),
		syncer:    newSyncer(reg.store, id, cfg, &reg.pendingBytes),
		ready:     make(chan struct{}),
		stop:      make(chan struct{}),
		synced:    make(chan struct{}),
		users:     make(map[string]*user),
		slots:     make([]slotState, cfg.MaxMembers),
		slotTicks: make([]slotTick, cfg.MaxMembers),
	}
	r.budget = newByteBudget(cfg.RoomBytes, budgetBurst*cfg.RoomBytes, time.Now())
	r.roster.Store(&roster{})
	r.interest.Store(cfg.interest)
	r.listeners = []listenerEntry{{id: -2, l: r.diff.record}, {id: -1, l: r.relay}}
	r.syncer.fenced = func() { reg.evictFenced(id, r.claim) }
	return r
}

// ID returns the room's id.
func (r *Room) ID() string { return r.id }

// load creates the room in the store with generated content unless it is
// there already, and reads its world.
func (r *Room) load(ctx context.Context) error {
	info, err := r.reg.store.Room(ctx, r.id)
	if errors.Is(err, ErrRoomNotFound) {
		fresh := RoomInfo{ID: r.id, Name: r.id, CreatedAt: time.Now().UTC()}
		if _, err := r.reg.store.CreateRoom(ctx, fresh, GenerateContent()); err != nil {
			return fmt.Errorf("room %s: create: %w", r.id, err)
		}
		// Another node may have created it first: read what the store holds.
		info, err = r.reg.store.Room(ctx, r.id)
	}
	if err != nil {
		return fmt.Errorf("room %s: read: %w", r.id, err)
	}
	if !r.claim.IsZero() {
		// From here on the store takes this room's writes from this claim
		// alone, and what it holds now includes every write of the claims
		// before it.
		if err := r.reg.store.Fence(ctx, r.id, r.claim); err != nil {
			return fmt.Errorf("room %s: fence at %+v: %w", r.id, r.claim, err)
		}
	}
	entities, err := r.reg.store.Entities(ctx, r.id)
	if err != nil {
		return fmt.Errorf("room %s: read entities: %w", r.id, err)
	}
	spawns, err := r.reg.store.EntitiesWith(ctx, r.id, ComponentSpawnPoint)
	if err != nil {
		return fmt.Errorf("room %s: find spawn point: %w", r.id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.info, r.entities, r.emptySince = info, entities, time.Now()
	for _, c := range entities {
		r.worldBytes += componentsSize(c)
	}
	for id := range spawns {
		r.spawnID = id
		break
	}
	return nil
}

// spawnLocked returns the spawn point's position. The room's lock must be held.
func (r *Room) spawnLocked() [3]float64 {
	if c, ok := r.entities[r.spawnID]; ok {
		if p, ok := vec3(c[ComponentPosition]); ok {
			return p
		}
	}
	for id, c := range r.entities { // moved or deleted: look again
		if _, ok := c[ComponentSpawnPoint]; ok {
			if p, ok := vec3(c[ComponentPosition]); ok {
				r.spawnID = id
				return p
			}
		}
	}
	return [3]float64{}
}

// join adds a session to the room as a device of req.User, which the
// registry has validated. It sends the joiner, in order, joined,
// entities_state and presence_state.
func (r *Room) join(member Member, req JoinRequest) (*Membership, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errRoomClosed
	}
	now := time.Now()
	tick := r.tickCount.Load()
	u := r.users[req.User]
	newUser := u == nil
	// resumed is the device this join takes over: a dropped one held for
	// its grace, or one of the same name whose session is still open.
	var resumed *Membership
	if newUser {
		if _, taken := r.entities[req.User]; taken {
			return nil, fmt.Errorf("%w: user id %q is an entity's", ErrInvalid, req.User)
		}
		slot, ok := r.allocSlotLocked(tick)
		if !ok {
			return nil, fmt.Errorf("%w: %d avatars", ErrRoomFull, len(r.users))
		}
		u = &user{id: req.User, name: req.Name, slot: slot, owner: r.table.Claim(slot)}
		r.users[u.id] = u
	} else {
		resumed = u.resumedDevice(req.Device)
		active := len(u.devices)
		if resumed != nil {
			active--
		}
		if active >= r.cfg.MaxDevices {
			return nil, fmt.Errorf("%w: user %q is here on %d devices", ErrInvalid, u.id, active)
		}
	}

	m := &Membership{room: r, member: member, user: u, slot: u.slot, owner: u.owner, budget: newByteBudget(r.cfg.MemberBytes, budgetBurst*r.cfg.MemberBytes, now), farPhase: r.nextFarPhase, lastSent: r.tickCount.Load()}
	r.nextFarPhase++
	m.meta = codec.PresenceMeta{Ref: newID("p"), Name: req.Name, Device: req.Device, OnlineAt: now.UnixMilli(), Meta: req.Meta}
	// A new user's device drives its avatar, and so does one that takes
	// over the driving device; another waits for its poses (takeOver).
	drives := newUser || u.driver == nil
	var replaced *Membership // a session of this device still open
	if resumed != nil {
		drives = drives || u.driver == resumed
		if resumed.state == membershipActive {
			replaced = resumed
		}
		m.meta.PrevRef = resumed.meta.Ref
		m.posedAt.Store(resumed.posedAt.Load()) // the same device, for takeOver
		u.devices = slices.DeleteFunc(u.devices, func(d *Membership) bool { return d == resumed })
		resumed.state = membershipGone
		r.presence.leave(u.id, resumed.meta)
	}
	u.devices = append(u.devices, m)
	r.presence.join(u.id, m.meta)
	wasStale := false
	if drives {
		// The device speaks for the avatar now: a stale avatar recovers.
		wasStale = u.stale
		u.stale = false
		r.setDriverLocked(u, m, now.UnixNano())
		u.heardAt.Store(now.UnixNano())
	}
	r.emptySince = time.Time{}

	if newUser {
		start := placement(r.spawnLocked())
		start.Time = uint32(now.UnixMilli()) // the server's clock: the pose holds as of the join
		r.table.Write(u.slot, codec.AppendPose(nil, &start))
		r.emitLocked(Event{Name: EventEntityCreated, User: u.id, Entity: u.id, Data: avatarComponents(u), Avatar: true})
	}
	r.rebuildRosterLocked()

	rec, _ := r.table.Read(u.slot, nil)
	var pose codec.Pose
	if err := codec.ParsePose(rec, &pose); err != nil {
		return nil, fmt.Errorf("room %s: avatar pose: %w", r.id, err)
	}
	r.sendLocked(member, &codec.Joined{
		Header:      codec.Header{Ref: req.Ref},
		Room:        r.id,
		User:        u.id,
		Entity:      u.id,
		Slot:        u.slot,
		PresenceRef: m.meta.Ref,
		Position:    pose.Head.Position,
		Rotation:    pose.Head.Rotation,
		TickMillis:  r.cfg.Tick.Milliseconds(),
		Resumed:     resumed != nil,
		Token:       req.Token,
		Interest:    r.interest.Load().wire(),
	})
	r.sendLocked(member, r.entitiesStateLocked(m))
	state := r.presenceStateLocked()
	r.fetchPresenceLocked(state.State)
	r.sendLocked(member, state)
	switch {
	case newUser:
		r.emitLocked(Event{Name: codec.EventUserJoined, User: u.id, Data: map[string]any{"name": u.name, "slot": u.slot}, self: m})
	case wasStale:
		r.emitLocked(Event{Name: codec.EventUserRecovered, User: u.id, self: m})
	}
	if replaced != nil {
		// The device is back on a new session before its old one was
		// known dead: the old one ends at once, and the room is done with it.
		replaced.member.Close(&codec.Goodbye{Code: codec.CodeReplaced, Message: fmt.Sprintf("device %q joined again on another session", req.Device)})
	}
	r.log.Debug("joined", "user", u.id, "device", req.Device, "slot", u.slot, "resumed", resumed != nil, "replaced", replaced != nil)
	return m, nil
}

// resumedDevice returns the device a rejoin of this user takes over: a
// device of the same name, held (dropped) or with its session still open (a
// client that lost its connection before the server noticed); else, when
// either side has no name to go by, the held device dropped last. A named
// device never takes over another named device, and a device without a
// name never takes over one whose session is open.
func (u *user) resumedDevice(device string) *Membership {
	var found, open *Membership
	for _, d := range u.devices {
		named := device != "" && d.meta.Device == device
		switch {
		case d.state == membershipActive:
			if named {
				open = d
			}
			continue
		case d.state != membershipHeld:
			continue
		case named:
			return d
		case device != "" && d.meta.Device != "":
			continue
		}
		if found == nil || d.heldUntil.After(found.heldUntil) {
			found = d
		}
	}
	if open != nil {
		return open
	}
	return found
}

// setDriverLocked makes m the device whose poses move u's avatar, at now
// (Unix nanoseconds). A stale avatar's flag is shown on the driving
// device's meta: m gets it unless it has just sent a pose. The device that
// drove before keeps its flag: it stopped driving because its poses
// stopped, or it is gone, and a dead device must not look alive.
// The room's lock must be held.
func (r *Room) setDriverLocked(u *user, m *Membership, now int64) {
	u.driver = m
	r.drivers[u.slot].Store(m)
	if u.stale && !m.meta.Stale && !m.sentWithin(now, r.cfg.StaleAfter) {
		r.updateMetaLocked(m, func(meta *codec.PresenceMeta) { meta.Stale = true })
	}
}

// allocSlotLocked claims a free slot, preferring one that has rested for
// the quarantine. The room's lock must be held.
func (r *Room) allocSlotLocked(tick uint64) (int, bool) {
	best := -1
	for i := range r.slots {
		s := &r.slots[i]
		if s.used {
			continue
		}
		if s.released == 0 || tick >= s.released+r.cfg.slotQuarantine() {
			best = i
			break
		}
		if best < 0 || s.released < r.slots[best].released {
			best = i
		}
	}
	if best < 0 {
		return 0, false
	}
	r.slots[best].used = true
	return best, true
}

// leaveLocked removes a device from the room. When it was the user's last,
// the user leaves: the avatar is deleted and user_left published.
// The room's lock must be held.
func (r *Room) leaveLocked(m *Membership) {
	if m.state == membershipGone {
		return
	}
	m.state = membershipGone
	u := m.user
	u.devices = slices.DeleteFunc(u.devices, func(d *Membership) bool { return d == m })
	r.presence.leave(u.id, m.meta)
	if len(u.devices) == 0 {
		r.removeUserLocked(u)
		return
	}
	if u.driver == m {
		now := time.Now().UnixNano()
		d := u.senderWithin(now, r.cfg.StaleAfter)
		if d == nil {
			d = u.newestDevice()
		}
		r.setDriverLocked(u, d, now)
	}
	r.rebuildRosterLocked()
}

// senderWithin returns the user's connected device that sent the newest
// pose, if it sent it within d before now (Unix nanoseconds); else nil.
func (u *user) senderWithin(now int64, d time.Duration) *Membership {
	var found *Membership
	for _, dev := range u.devices {
		if dev.state == membershipActive && dev.sentWithin(now, d) && (found == nil || dev.posedAt.Load() > found.posedAt.Load()) {
			found = dev
		}
	}
	return found
}

// newestDevice returns the user's most recent device still connected, else
// the most recent one.
func (u *user) newestDevice() *Membership {
	for i := len(u.devices) - 1; i >= 0; i-- {
		if u.devices[i].state == membershipActive {
			return u.devices[i]
		}
	}
	return u.devices[len(u.devices)-1]
}

// removeUserLocked removes a user whose last device left, and tells the
// others. The room's lock must be held.
func (r *Room) removeUserLocked(u *user) {
	delete(r.users, u.id)
	r.drivers[u.slot].Store(nil)
	r.slots[u.slot] = slotState{released: max(1, r.tickCount.Load())}
	r.rebuildRosterLocked() // before the events: the leaver hears none of them
	r.emitLocked(Event{Name: EventEntityDeleted, User: u.id, Entity: u.id, Avatar: true})
	r.emitLocked(Event{Name: codec.EventUserLeft, User: u.id})
	if len(r.users) == 0 {
		r.emptySince = time.Now()
	}
}

// disconnectLocked handles a session that ended without leaving: its device
// is held until lastHeard plus the reconnect grace, then leaves.
// The room's lock must be held.
func (r *Room) disconnectLocked(m *Membership, lastHeard, now time.Time) {
	if m.state != membershipActive {
		return
	}
	until := lastHeard.Add(r.cfg.ReconnectGrace)
	if !until.After(now) {
		r.leaveLocked(m)
		return
	}
	m.state, m.heldUntil = membershipHeld, until
	u := m.user
	if u.driver == m {
		// A device that sends poses takes over; without one the held
		// device keeps the avatar, for its reconnect to drive again.
		if d := u.senderWithin(now.UnixNano(), r.cfg.StaleAfter); d != nil {
			r.setDriverLocked(u, d, now.UnixNano())
		}
	}
	r.rebuildRosterLocked()
}

// rebuildRosterLocked publishes a new roster for the tick and relays.
// The room's lock must be held.
func (r *Room) rebuildRosterLocked() {
	ro := &roster{slots: make([]int, 0, len(r.users))}
	for _, u := range r.users {
		ro.slots = append(ro.slots, u.slot)
		for _, d := range u.devices {
			if d.state == membershipActive {
				ro.members = append(ro.members, d)
			}
		}
	}
	slices.Sort(ro.slots)
	r.roster.Store(ro)
}

// sendLocked encodes msg and queues it for one member.
// The room's lock must be held, which keeps a member's messages in order.
func (r *Room) sendLocked(to Member, msg codec.Message) {
	frame, err := codec.EncodeFrame(msg)
	if err != nil {
		r.log.Error("encode", "err", err)
		return
	}
	to.SendFrame(frame)
}

// broadcastLocked encodes msg once and queues it for every member but skip.
// The room's lock must be held.
func (r *Room) broadcastLocked(msg codec.Message, skip *Membership) {
	members := r.roster.Load().members
	if len(members) == 0 || (len(members) == 1 && members[0] == skip) {
		return
	}
	frame, err := codec.EncodeFrame(msg)
	if err != nil {
		r.log.Error("encode", "err", err)
		return
	}
	for _, m := range members {
		if m != skip {
			m.member.SendFrame(frame)
		}
	}
}

// relay is the listener that sends user and application events to the
// members; entity events reach them through the diff. The server's own
// events about users go out with the tick's diffs, so that a burst of
// joins costs each member one write a tick, not one a join; the device an
// event is about gets it at once.
func (r *Room) relay(ev Event) {
	msg := &codec.Event{Name: ev.Name, Data: ev.Data, User: ev.User, At: ev.At.UnixMilli()}
	switch ev.Name {
	case EventEntityCreated, EventEntityUpdated, EventEntityDeleted:
		return
	case codec.EventUserJoined, codec.EventUserLeft, codec.EventUserStale, codec.EventUserRecovered:
		frame, err := codec.EncodeFrame(msg)
		if err != nil {
			r.log.Error("encode", "err", err)
			return
		}
		if ev.self != nil {
			ev.self.member.SendFrame(frame)
		}
		r.heldEvents = append(r.heldEvents, heldEvent{frame: frame, to: r.roster.Load().members, skip: ev.self})
		return
	}
	r.broadcastLocked(msg, ev.from)
}

// heldEvent is a server event about a user that waits for the tick.
type heldEvent struct {
	frame []byte
	to    []*Membership // the room's members when it happened
	skip  *Membership   // the device it is about, which has it already
}

// sendHeldEventsLocked sends the events held for the tick.
// The room's lock must be held.
func (r *Room) sendHeldEventsLocked() {
	for i, e := range r.heldEvents {
		for _, m := range e.to {
			if m != e.skip && m.state == membershipActive {
				m.member.SendFrame(e.frame)
			}
		}
		r.heldEvents[i] = heldEvent{}
	}
	r.heldEvents = r.heldEvents[:0]
}

// Stats is a moment's view of a room.
type Stats struct {
	ID       string
	Users    int
	Devices  int
	Entities int
	// PendingChanges is how many entity changes wait for the store.
	PendingChanges int
}

// Stats returns the room's current numbers.
func (r *Room) Stats() Stats {
	r.mu.Lock()
	s := Stats{ID: r.id, Users: len(r.users), Entities: len(r.entities)}
	for _, u := range r.users {
		s.Devices += len(u.devices)
	}
	r.mu.Unlock()
	s.PendingChanges = r.syncer.Pending()
	return s
}

// shutdown marks the room closed and stops its goroutines.
func (r *Room) shutdown() {
	r.mu.Lock()
	r.closeLocked()
	r.mu.Unlock()
	r.stopOnce.Do(func() { close(r.stop) })
}

// closeLocked marks the room closed, so that joins go to a new instance,
// and takes its presence off the node's.
// The room's lock must be held.
func (r *Room) closeLocked() {
	if r.closed {
		return
	}
	r.closed = true
	r.reg.hub.publish(r.id, nil, nil, true)
}

// evict stops the room for a move to owner: every member gets a goodbye
// moved, and the room's goroutines stop.
func (r *Room) evict(owner *codec.Location) {
	r.mu.Lock()
	r.closeLocked()
	var members []Member
	for _, u := range r.users {
		for _, d := range u.devices {
			if d.state == membershipActive {
				members = append(members, d.member)
			}
			d.state = membershipGone
		}
	}
	clear(r.users)
	r.rebuildRosterLocked()
	r.mu.Unlock()
	r.stopOnce.Do(func() { close(r.stop) })
	msg := fmt.Sprintf("room %s moved to another node", r.id)
	if owner != nil && owner.Node != "" {
		msg = fmt.Sprintf("room %s moved to node %s", r.id, owner.Node)
	}
	goodbye := &codec.Goodbye{Code: codec.CodeMoved, Message: msg, Moved: owner}
	for _, m := range members {
		m.Close(goodbye)
	}
	r.log.Warn("room evicted: another node owns it", "members", len(members), "owner", msg)
}
