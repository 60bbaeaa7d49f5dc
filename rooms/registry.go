package rooms

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds the live rooms of a node. A room starts on its first join
// and stops once it has been empty for Config.EmptyGrace.
type Registry struct {
	cfg   Config
	store Store
	wg    sync.WaitGroup // every room's goroutines
	quit  chan struct{}  // closed by Close

	pendingBytes atomic.Int64 // entity changes waiting for the store, every room's
	hub          presenceHub  // the presence of every room of the node

	mu    sync.Mutex // guards the following
	rooms map[string]*Room
	// draining holds rooms that stopped and are still writing their last
	// changes; the next instance of a room loads only after they are written.
	draining map[string]*Room
	// deleting holds the ids whose rooms DeleteRoom is removing from the
	// store; their channels close when it is done. A room of that id starts
	// only after.
	deleting map[string]chan struct{}
	// claims holds the claims of this node (with a Placement): of its live
	// and draining rooms, and those reserved for a join to come.
	claims map[string]*heldClaim
	// startHooks are OnRoomStart's functions, by number.
	startHooks map[int]func(*Room)
	nextHook   int
	closed     bool
}

// NewRegistry returns a registry whose rooms keep their worlds in store.
func NewRegistry(store Store, cfg Config) (*Registry, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Registry{
		cfg:      cfg,
		store:    store,
		quit:     make(chan struct{}),
		rooms:    make(map[string]*Room),
		draining: make(map[string]*Room),
		deleting: make(map[string]chan struct{}),
		claims:   make(map[string]*heldClaim),
	}, nil
}

// Config returns the registry's configuration with defaults filled in.
func (g *Registry) Config() Config { return g.cfg }

// Join adds member to the room with the given id, starting the room if it
// is not live, and returns the member's membership. The room sends the member
// joined (with req.Ref), entities_state and presence_state, in that order,
// before anything else.
func (g *Registry) Join(ctx context.Context, roomID string, member Member, req JoinRequest) (*Membership, error) {
	if !ValidID(roomID) {
		return nil, fmt.Errorf("%w: room id %q", ErrInvalid, roomID)
	}
	switch {
	case req.User == "":
		req.User = newID("u")
	case !ValidID(req.User):
		return nil, fmt.Errorf("%w: user id %q", ErrInvalid, req.User)
	}
	if req.Device != "" && !ValidID(req.Device) {
		return nil, fmt.Errorf("%w: device %q", ErrInvalid, req.Device)
	}
	if !validName(req.Name) {
		return nil, fmt.Errorf("%w: name must be printable UTF-8 of at most %d bytes", ErrInvalid, MaxNameLength)
	}
	if valueSize(req.Meta) > MaxMetaBytes {
		return nil, fmt.Errorf("%w: meta over %d bytes", ErrInvalid, MaxMetaBytes)
	}
	if strings.TrimSpace(req.Name) == "" {
		req.Name = req.User
	}
	for {
		r, err := g.room(ctx, roomID)
		if err != nil {
			return nil, err
		}
		m, err := r.join(member, req)
		if errors.Is(err, errRoomClosed) {
			continue // it retired under us; start it again
		}
		return m, err
	}
}

// room returns the live room with the id, starting it if needed, once it
// has loaded.
func (g *Registry) room(ctx context.Context, id string) (*Room, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	r, ok := g.rooms[id]
	if !ok {
		if len(g.rooms) >= g.cfg.MaxRooms {
			g.mu.Unlock()
			return nil, fmt.Errorf("%w: %d rooms are live", ErrTooManyRooms, len(g.rooms))
		}
		r = newRoom(g, id)
		g.rooms[id] = r
		prev, deleted := g.draining[id], g.deleting[id]
		g.wg.Go(func() { g.start(r, prev, deleted) })
	}
	g.mu.Unlock()
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.loadErr != nil {
		return nil, r.loadErr
	}
	return r, nil
}

// start loads a new room and starts its goroutines, after prev, the room's
// previous instance if it is still writing its last changes, is done (until
// then the store does not hold the room's world), and after deleted closes
// if the room is being deleted. Joiners wait for it with contexts of their
// own. Runs in its own goroutine.
func (g *Registry) start(r *Room, prev *Room, deleted <-chan struct{}) {
	var err error
	var hooks []func(*Room) // OnRoomStart's, numbered below hooksSeen
	hooksSeen := 0
	if prev != nil {
		select {
		case <-prev.synced:
		case <-g.quit:
			err = ErrClosed
		}
	}
	if deleted != nil && err == nil {
		select {
		case <-deleted:
		case <-g.quit:
			err = ErrClosed
		}
	}
	if err == nil && g.cfg.Placement != nil {
		err = g.takeClaim(r)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
		if err = r.load(ctx); err != nil && !errors.Is(err, ErrFenced) {
			err = &StoreError{Op: "room " + r.id, Err: err}
		} else if err != nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		cancel()
	}

	g.mu.Lock()
	switch {
	case err != nil:
		r.loadErr = err
	case g.closed:
		r.loadErr = ErrClosed
	case g.rooms[r.id] != r:
		r.loadErr = fmt.Errorf("%w: room %s was claimed by another node while it started", ErrUnavailable, r.id)
	default:
		hooks, hooksSeen = g.hooksFrom(0), g.nextHook
		g.wg.Go(r.tickLoop)
		g.wg.Go(func() {
			r.syncer.loop(r.stop, g.quit)
			g.mu.Lock()
			if g.draining[r.id] == r {
				delete(g.draining, r.id)
			}
			g.mu.Unlock()
			close(r.synced)
			g.releaseIfIdle(r)
		})
	}
	if r.loadErr != nil && g.rooms[r.id] == r {
		delete(g.rooms, r.id)
	}
	g.mu.Unlock()
	for _, fn := range hooks {
		fn(r)
	}
	// Hooks added meanwhile are called here; those added once ready is
	// closed (under the lock) see the room among the running ones.
	g.mu.Lock()
	if r.loadErr == nil {
		hooks = g.hooksFrom(hooksSeen)
	}
	close(r.ready)
	g.mu.Unlock()
	for _, fn := range hooks {
		fn(r)
	}
	if r.loadErr != nil {
		var elsewhere *ElsewhereError
		if errors.As(r.loadErr, &elsewhere) {
			g.cfg.Logger.Debug("room lives on another node", "room", r.id, "node", elsewhere.Owner.Node)
		} else {
			g.cfg.Logger.Error("room failed to start", "room", r.id, "err", r.loadErr)
		}
		if !r.claim.IsZero() {
			g.releaseIfIdle(r)
		}
		return
	}
	g.cfg.Logger.Info("room started", "room", r.id)
}

// takeClaim gives a starting room this node's claim on it: the one it holds
// already, or a new one from the placement.
func (g *Registry) takeClaim(r *Room) error {
	g.mu.Lock()
	c, ok := g.holdClaimLocked(r.id)
	g.mu.Unlock()
	if !ok {
		var err error
		if c, err = g.claim(context.Background(), r.id); err != nil {
			return err
		}
		g.mu.Lock()
		if g.claims[r.id] == nil {
			g.claims[r.id] = &heldClaim{claim: c}
		} else {
			c, _ = g.holdClaimLocked(r.id) // a reservation raced us: the same claim
		}
		g.mu.Unlock()
	}
	r.claim = c
	r.syncer.claim = c
	return nil
}

// retire removes a room that has stayed empty, unless someone joined it in
// the meantime. It reports whether the room is now closed.
func (g *Registry) retire(r *Room) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.users) > 0 || r.closed {
		return r.closed
	}
	r.closeLocked()
	if g.rooms[r.id] == r {
		delete(g.rooms, r.id)
	}
	g.draining[r.id] = r
	g.cfg.Logger.Info("room stopped", "room", r.id, "reason", "empty")
	return true
}

// OnRoomStart calls fn with each room of this node that is running now and
// then with each room as it starts, before anyone can join it, until cancel
// is called: a way to attach listeners (Room.Subscribe) to rooms that start
// on demand, when a join asks for them. fn is called once per start of a
// room, in the goroutine that starts it (or, for the rooms running now, in
// OnRoomStart's caller); it must return quickly and must not call the
// registry.
func (g *Registry) OnRoomStart(fn func(*Room)) (cancel func()) {
	g.mu.Lock()
	if g.startHooks == nil {
		g.startHooks = make(map[int]func(*Room))
	}
	id := g.nextHook
	g.nextHook++
	g.startHooks[id] = fn
	var running []*Room
	for _, r := range g.rooms {
		select {
		case <-r.ready:
			if r.loadErr == nil {
				running = append(running, r)
			}
		default: // starting: start calls fn
		}
	}
	g.mu.Unlock()
	for _, r := range running {
		fn(r)
	}
	return func() {
		g.mu.Lock()
		delete(g.startHooks, id)
		g.mu.Unlock()
	}
}

// hooksFrom returns OnRoomStart's functions numbered from first on, in the
// order they were added. g.mu must be held.
func (g *Registry) hooksFrom(first int) []func(*Room) {
	ids := slices.Sorted(maps.Keys(g.startHooks))
	ids = ids[sort.SearchInts(ids, first):]
	fns := make([]func(*Room), len(ids))
	for i, id := range ids {
		fns[i] = g.startHooks[id]
	}
	return fns
}

// Room returns the live room with the id, or nil.
func (g *Registry) Room(id string) *Room {
	g.mu.Lock()
	r := g.rooms[id]
	g.mu.Unlock()
	if r == nil {
		return nil
	}
	select {
	case <-r.ready:
		if r.loadErr == nil {
			return r
		}
	default:
	}
	return nil
}

// Rooms returns the live rooms, sorted by id.
func (g *Registry) Rooms() []*Room {
	g.mu.Lock()
	list := make([]*Room, 0, len(g.rooms))
	for _, r := range g.rooms {
		list = append(list, r)
	}
	g.mu.Unlock()
	list = slices.DeleteFunc(list, func(r *Room) bool { return g.Room(r.id) != r })
	slices.SortFunc(list, func(a, b *Room) int { return strings.Compare(a.id, b.id) })
	return list
}

// Close stops every room: no more joins, ticks stop, each room's entity
// changes are written to the store (each attempt bounded by
// Config.StoreTimeout), and then the node's claims are released. It
// returns when every room goroutine has ended. Sessions should be closed
// first.
func (g *Registry) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.wg.Wait()
		return
	}
	g.closed = true
	live := make([]*Room, 0, len(g.rooms))
	for _, r := range g.rooms {
		live = append(live, r)
	}
	g.rooms = map[string]*Room{}
	g.mu.Unlock()
	close(g.quit)
	for _, r := range live {
		r.shutdown()
	}
	g.wg.Wait()
	// Every room's last changes are written (or given up on): its claim may
	// go, so that another node can take the room at once.
	g.mu.Lock()
	claims := g.claims
	g.claims = map[string]*heldClaim{}
	g.mu.Unlock()
	// Some at a time, each bounded by the store timeout: thousands of rooms
	// must not make a stop slow.
	var releases sync.WaitGroup
	slots := make(chan struct{}, 32)
	for id, h := range claims {
		if h.reserved != nil {
			h.reserved.Stop()
		}
		slots <- struct{}{}
		releases.Go(func() {
			defer func() { <-slots }()
			g.release(id, h.claim)
		})
	}
	releases.Wait()
}
