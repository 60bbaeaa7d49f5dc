package rooms

import (
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/posecast/posecast/codec"
)

// MaxMatchLength bounds the regular expression of a presence subscription.
const MaxMatchLength = 256

// Collector aggregates presence across rooms, and across nodes in a
// cluster: who is in each room, as metas by user, fed per node by the
// node's own registry (Follow) and, in a cluster, by what other nodes
// publish. Subscriptions take the presence of the rooms whose ids match a
// pattern, first whole and then as what changed since they last took it,
// so that each subscriber gets one message per interval however many
// presence events happened. Entries are kept per node: dropping a node
// drops its users and nothing else. It is safe for concurrent use.
type Collector struct {
	mu    sync.Mutex // guards the following
	nodes map[string]map[string]RoomPresence
	subs  map[*Subscription]struct{}
}

// NewCollector returns an empty collector.
func NewCollector() *Collector {
	return &Collector{nodes: make(map[string]map[string]RoomPresence), subs: make(map[*Subscription]struct{})}
}

// CompileMatch compiles a subscription's pattern: a Go regular expression
// (RE2, matched in linear time) of at most MaxMatchLength bytes, matched
// against room ids anywhere unless anchored.
func CompileMatch(pattern string) (*regexp.Regexp, error) {
	if len(pattern) > MaxMatchLength {
		return nil, fmt.Errorf("%w: match is %d bytes, limit %d", ErrInvalid, len(pattern), MaxMatchLength)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%w: match: %v", ErrInvalid, err)
	}
	return re, nil
}

// maxFollowQueue bounds the presence updates waiting for Follow's
// goroutine; past it they are dropped and a snapshot takes their place.
const maxFollowQueue = 1 << 16

// Follow feeds the collector with this registry's presence, as node, from
// a goroutine of its own: a room's tick hands its update over and goes on,
// never waiting on the collector's subscribers. stop ends the feed and
// waits for the goroutine; it may be called more than once.
func (c *Collector) Follow(node string, g *Registry) (stop func()) {
	f := &follower{c: c, g: g, node: node, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	cancel := g.WatchPresence(func(_ uint64, state map[string]RoomPresence) {
		f.mu.Lock()
		f.start = state
		f.mu.Unlock()
		poke(f.wake)
	}, func(u PresenceUpdate) {
		f.mu.Lock()
		switch {
		case f.overflow:
		case len(f.queue) >= maxFollowQueue:
			f.overflow, f.queue = true, nil
		default:
			f.queue = append(f.queue, u)
		}
		f.mu.Unlock()
		poke(f.wake)
	})
	var wg sync.WaitGroup
	wg.Go(f.loop)
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			close(f.quit)
			wg.Wait()
		})
	}
}

// follower is Follow's queue between a registry's rooms and a collector.
type follower struct {
	c    *Collector
	g    *Registry
	node string
	wake chan struct{}
	quit chan struct{}

	mu       sync.Mutex // guards the following
	start    map[string]RoomPresence
	queue    []PresenceUpdate
	overflow bool
}

// loop applies what the rooms handed over, in order. Runs in its own
// goroutine until stopped.
func (f *follower) loop() {
	var skip uint64 // updates up to it are in a snapshot applied already
	for {
		select {
		case <-f.quit:
			return
		case <-f.wake:
		}
		f.mu.Lock()
		start, queue, overflow := f.start, f.queue, f.overflow
		f.start, f.queue, f.overflow = nil, nil, false
		f.mu.Unlock()
		if start != nil {
			f.c.SetNode(f.node, start)
		}
		if overflow {
			var state map[string]RoomPresence
			skip, state = f.g.PresenceSnapshot(nil)
			f.c.SetNode(f.node, state)
		}
		for _, u := range queue {
			if u.Seq > skip {
				f.c.Apply(f.node, u)
			}
		}
	}
}

// SetNode replaces what the collector holds of node with state, the node's
// rooms by id.
func (c *Collector) SetNode(node string, state map[string]RoomPresence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setNodeLocked(node, state)
}

func (c *Collector) setNodeLocked(node string, state map[string]RoomPresence) {
	for room, users := range c.nodes[node] {
		for user := range users {
			c.dirtyLocked(room, user)
		}
	}
	if len(state) == 0 {
		delete(c.nodes, node)
		return
	}
	c.nodes[node] = state
	for room, users := range state {
		for user := range users {
			c.dirtyLocked(room, user)
		}
	}
}

// Apply applies one of node's presence updates. The caller keeps a node's
// updates in order and complete (see PresenceUpdate.Seq).
func (c *Collector) Apply(node string, u PresenceUpdate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rooms := c.nodes[node]
	if u.Gone {
		for user := range rooms[u.Room] {
			c.dirtyLocked(u.Room, user)
		}
		delete(rooms, u.Room)
		if len(rooms) == 0 {
			delete(c.nodes, node)
		}
		return
	}
	if rooms == nil {
		rooms = make(map[string]RoomPresence)
		c.nodes[node] = rooms
	}
	state := rooms[u.Room]
	if state == nil {
		state = make(RoomPresence)
		rooms[u.Room] = state
	}
	ApplyPresence(state, u.Joins, u.Leaves)
	for user := range u.Joins {
		c.dirtyLocked(u.Room, user)
	}
	for user := range u.Leaves {
		c.dirtyLocked(u.Room, user)
	}
	if len(state) == 0 {
		delete(rooms, u.Room)
	}
	if len(rooms) == 0 {
		delete(c.nodes, node)
	}
}

// DropNode forgets everything of node: its users leave every subscription.
func (c *Collector) DropNode(node string) {
	c.SetNode(node, nil)
}

// Nodes returns the nodes whose users the collector holds, sorted.
func (c *Collector) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for n := range c.nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Snapshot returns the presence of the rooms whose ids match, by room and
// then by user.
func (c *Collector) Snapshot(match *regexp.Regexp) map[string]map[string]codec.PresenceEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked(match.MatchString)
}

// snapshotLocked returns the presence of the rooms match accepts.
// The collector's lock must be held.
func (c *Collector) snapshotLocked(match func(room string) bool) map[string]map[string]codec.PresenceEntry {
	out := make(map[string]map[string]codec.PresenceEntry)
	for _, rooms := range c.nodes {
		for room, users := range rooms {
			if !match(room) {
				continue
			}
			for user := range users {
				if out[room] == nil {
					out[room] = make(map[string]codec.PresenceEntry)
				}
				if _, done := out[room][user]; !done {
					out[room][user] = codec.PresenceEntry{Metas: c.metasLocked(room, user)}
				}
			}
		}
	}
	return out
}

// metasLocked returns a user's metas in a room, over every node, in the
// order of the nodes' names. The collector's lock must be held.
func (c *Collector) metasLocked(room, user string) []codec.PresenceMeta {
	var nodes []string
	for n, rooms := range c.nodes {
		if len(rooms[room][user]) > 0 {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 1 {
		return slices.Clone(c.nodes[nodes[0]][room][user])
	}
	slices.Sort(nodes)
	var out []codec.PresenceMeta
	for _, n := range nodes {
		out = append(out, c.nodes[n][room][user]...)
	}
	return out
}

// dirtyLocked tells the subscriptions that match room that user's metas
// there may have changed. The collector's lock must be held.
func (c *Collector) dirtyLocked(room, user string) {
	for s := range c.subs {
		if s.matchesLocked(room) {
			s.dirty[roomUser{room, user}] = struct{}{}
		}
	}
}

type roomUser struct{ room, user string }

// maxMatchCache bounds the rooms whose match a subscription remembers.
const maxMatchCache = 1 << 16

// Subscription is one subscriber's view of the rooms matching a pattern:
// what it took last, and what changed since. Take it at the subscriber's
// interval; close it when done.
type Subscription struct {
	c     *Collector
	match *regexp.Regexp

	// Guarded by c.mu.
	started bool
	sent    map[string]RoomPresence // what the subscriber holds now
	dirty   map[roomUser]struct{}
	matched map[string]bool // room -> whether match accepts it
}

// Subscribe starts a subscription to the rooms whose ids match.
func (c *Collector) Subscribe(match *regexp.Regexp) *Subscription {
	s := &Subscription{c: c, match: match, sent: make(map[string]RoomPresence), dirty: make(map[roomUser]struct{}), matched: make(map[string]bool)}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
}

func (s *Subscription) matchesLocked(room string) bool {
	m, ok := s.matched[room]
	if !ok {
		if len(s.matched) >= maxMatchCache {
			clear(s.matched)
		}
		m = s.match.MatchString(room)
		s.matched[room] = m
	}
	return m
}

// Take returns what the subscriber has not seen: on the first call the
// whole presence of the matching rooms (msg.State, never nil), after that
// the joins and leaves of metas since the call before, or nil when nothing
// changed. msg.Sub and msg.Ref are the caller's to set.
func (s *Subscription) Take() *codec.PresenceCollection {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.started {
		s.started = true
		clear(s.dirty)
		state := c.snapshotLocked(s.matchesLocked)
		for room, users := range state {
			sent := make(RoomPresence, len(users))
			for user, e := range users {
				sent[user] = slices.Clone(e.Metas)
			}
			s.sent[room] = sent
		}
		return &codec.PresenceCollection{State: state}
	}
	if len(s.dirty) == 0 {
		return nil
	}
	var joins, leaves map[string]map[string]codec.PresenceEntry
	add := func(to *map[string]map[string]codec.PresenceEntry, room, user string, metas []codec.PresenceMeta) {
		if *to == nil {
			*to = make(map[string]map[string]codec.PresenceEntry)
		}
		if (*to)[room] == nil {
			(*to)[room] = make(map[string]codec.PresenceEntry)
		}
		(*to)[room][user] = codec.PresenceEntry{Metas: metas}
	}
	for k := range s.dirty {
		now := c.metasLocked(k.room, k.user)
		before := s.sent[k.room][k.user]
		if j := missingFrom(before, now); len(j) > 0 {
			add(&joins, k.room, k.user, j)
		}
		if l := missingFrom(now, before); len(l) > 0 {
			add(&leaves, k.room, k.user, l)
		}
		switch {
		case len(now) > 0 && s.sent[k.room] == nil:
			s.sent[k.room] = RoomPresence{k.user: now}
		case len(now) > 0:
			s.sent[k.room][k.user] = now
		default:
			delete(s.sent[k.room], k.user)
			if len(s.sent[k.room]) == 0 {
				delete(s.sent, k.room)
			}
		}
	}
	clear(s.dirty)
	if joins == nil && leaves == nil {
		return nil
	}
	return &codec.PresenceCollection{Joins: joins, Leaves: leaves}
}

// missingFrom returns the metas of b whose phx_ref a lacks.
func missingFrom(a, b []codec.PresenceMeta) []codec.PresenceMeta {
	var out []codec.PresenceMeta
	for _, m := range b {
		if !slices.ContainsFunc(a, func(x codec.PresenceMeta) bool { return x.Ref == m.Ref }) {
			out = append(out, m)
		}
	}
	return out
}
