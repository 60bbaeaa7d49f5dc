package rooms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posecast/posecast/codec"
)

// Placement decides which node of a cluster runs a room: a room lives on one
// node at a time, its single writer. A Registry without one runs every room
// itself. rooms/cluster implements it over NATS.
type Placement interface {
	// Claim makes this node the room's owner, or finds that it is already,
	// and returns the claim. When another live node owns the room it
	// returns an *ElsewhereError naming it; when the directory cannot be
	// reached, an error that wraps ErrUnavailable.
	Claim(ctx context.Context, room string) (Claim, error)
	// Release gives up a claim this node holds. The room's last changes are
	// in the store by then.
	Release(ctx context.Context, room string, c Claim) error
	// Lookup tells, without claiming anything, whether another live node
	// owns the room, and where it is.
	Lookup(ctx context.Context, room string) (owner codec.Location, elsewhere bool, err error)
}

// Claim is a node's hold on a room. Claims are ordered by Generation, then
// Epoch: every claim of a room is greater than the claims before it. The
// store refuses writes of a room from any claim but the one that fenced it
// last (Store.Fence), so a node that lost its claim cannot overwrite the
// new owner's world. The zero Claim is a node without claims.
type Claim struct {
	// Generation numbers the directory the claim was made in: a directory
	// made anew (its epochs start again) has a higher one than any before.
	Generation int64
	// Epoch numbers the claims of a room within a directory.
	Epoch uint64
}

// IsZero reports whether c is the claim of a node without claims.
func (c Claim) IsZero() bool { return c == Claim{} }

// Before reports whether c is older than d.
func (c Claim) Before(d Claim) bool {
	return c.Generation < d.Generation || c.Generation == d.Generation && c.Epoch < d.Epoch
}

// ElsewhereError reports a room that lives on another node.
type ElsewhereError struct {
	Room  string
	Owner codec.Location
}

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("room %s lives on node %s", e.Room, e.Owner.Node)
}

// ErrFenced is what a Store returns for a write of a room from a claim that a
// newer claim has replaced.
var ErrFenced = errors.New("room claimed by a newer owner")

// Locate tells where the room with the id lives: here is true when it is,
// or now will be, this node; otherwise owner names the node. With reserve,
// a room no node runs is claimed for this node, for Config.EmptyGrace, so
// that the join that follows finds it here; without, it is only looked up
// (here, then, means that no other node runs it now). Without a Placement
// every room is here.
func (g *Registry) Locate(ctx context.Context, id string, reserve bool) (owner codec.Location, here bool, err error) {
	if !ValidID(id) {
		return owner, false, fmt.Errorf("%w: room id %q", ErrInvalid, id)
	}
	if g.cfg.Placement == nil {
		return owner, true, nil
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return owner, false, ErrClosed
	}
	_, live := g.rooms[id]
	_, held := g.claims[id]
	claims := len(g.claims)
	g.mu.Unlock()
	if live || held {
		return owner, true, nil
	}
	if !reserve {
		lctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
		defer cancel()
		owner, elsewhere, err := g.cfg.Placement.Lookup(lctx, id)
		if err != nil {
			return owner, false, fmt.Errorf("%w: find room %s: %w", ErrUnavailable, id, err)
		}
		return owner, !elsewhere, nil
	}
	if claims >= g.cfg.MaxRooms {
		// Each claim is a directory entry: asking for rooms never joined
		// must not grow them without bound.
		return owner, false, fmt.Errorf("%w: %d rooms are claimed by this node", ErrTooManyRooms, claims)
	}
	c, err := g.claim(ctx, id)
	var elsewhere *ElsewhereError
	switch {
	case errors.As(err, &elsewhere):
		return elsewhere.Owner, false, nil
	case err != nil:
		return owner, false, err
	}
	g.reserve(id, c)
	return owner, true, nil
}

// claim asks the placement for a room, bounded by the store timeout.
func (g *Registry) claim(ctx context.Context, id string) (Claim, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	c, err := g.cfg.Placement.Claim(ctx, id)
	var elsewhere *ElsewhereError
	if err != nil && !errors.As(err, &elsewhere) && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: place room %s: %w", ErrUnavailable, id, err)
	}
	return c, err
}

// heldClaim is a claim this node holds for a room, live or not.
type heldClaim struct {
	claim Claim
	// reserved is set while the claim waits for a join that has not come;
	// it releases the claim if none comes in time.
	reserved *time.Timer
}

// reserve records a claim made ahead of a join, and releases it after
// Config.EmptyGrace unless a room of that id started in the meantime.
func (g *Registry) reserve(id string, c Claim) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.release(id, c)
		return
	}
	if g.claims[id] != nil {
		g.mu.Unlock()
		return // a join claimed it meanwhile: the same claim
	}
	h := &heldClaim{claim: c}
	h.reserved = time.AfterFunc(g.cfg.EmptyGrace, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		_, live := g.rooms[id]
		_, draining := g.draining[id]
		if g.claims[id] != h || h.reserved == nil || live || draining || g.closed {
			return
		}
		delete(g.claims, id)
		g.wg.Go(func() { g.release(id, c) })
	})
	g.claims[id] = h
	g.mu.Unlock()
}

// holdClaimLocked returns the claim this node holds for a room, if any, and
// stops its reservation: a room of that id is starting with it.
// The registry's lock must be held.
func (g *Registry) holdClaimLocked(id string) (Claim, bool) {
	h := g.claims[id]
	if h == nil {
		return Claim{}, false
	}
	if h.reserved != nil {
		h.reserved.Stop()
		h.reserved = nil
	}
	return h.claim, true
}

// releaseIfIdle gives up the claim of a room whose instance r has written
// its last changes, unless another instance of the room runs or starts.
func (g *Registry) releaseIfIdle(r *Room) {
	if g.cfg.Placement == nil {
		return
	}
	g.mu.Lock()
	h := g.claims[r.id]
	_, live := g.rooms[r.id]
	_, deleting := g.deleting[r.id]
	if live || deleting || h == nil || h.claim != r.claim || g.closed {
		g.mu.Unlock()
		return
	}
	delete(g.claims, r.id)
	g.mu.Unlock()
	g.release(r.id, r.claim)
}

// releaseUnlessLive gives up this node's claim of a room that has no live
// instance here (a delete is done with it).
func (g *Registry) releaseUnlessLive(id string) {
	g.mu.Lock()
	h := g.claims[id]
	_, live := g.rooms[id]
	_, draining := g.draining[id]
	if h == nil || live || draining || h.reserved != nil || g.closed {
		g.mu.Unlock()
		return
	}
	delete(g.claims, id)
	g.mu.Unlock()
	g.release(id, h.claim)
}

// release gives a claim up, logging a failure: an unreleased claim only
// delays the room's next start elsewhere until this node's lease ends.
func (g *Registry) release(id string, c Claim) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	if err := g.cfg.Placement.Release(ctx, id, c); err != nil {
		g.cfg.Logger.Warn("room claim not released", "room", id, "generation", c.Generation, "epoch", c.Epoch, "err", err)
	}
}

// Evict stops a room this node no longer owns under claim: its members get
// a goodbye moved naming owner (nil when it is not known: clients ask
// /cert-hash again), its changes not yet written are dropped when the
// store refuses them (the new owner fenced it), and the claim is forgotten
// without a release. Nothing happens when this node's claim of the room is
// not claim (it claimed the room again since). The cluster calls it when
// it finds that another node holds the room; a room whose writes the store
// fences calls it itself. Without a Placement, claim is the zero Claim and
// the room stops all the same (to move it by hand).
func (g *Registry) Evict(id string, claim Claim, owner *codec.Location) {
	g.mu.Lock()
	if h := g.claims[id]; h != nil {
		if h.claim != claim {
			g.mu.Unlock()
			return
		}
		if h.reserved != nil {
			h.reserved.Stop()
		}
		delete(g.claims, id)
	}
	r := g.rooms[id]
	if r != nil && r.claim != claim && !r.claim.IsZero() {
		r = nil // an instance under another claim: not this eviction's
	}
	if r != nil {
		// A room still starting fails its start when it finds itself gone
		// from g.rooms; one that runs drains like a retired room.
		delete(g.rooms, id)
		select {
		case <-r.ready:
			if r.loadErr == nil {
				g.draining[id] = r
			} else {
				r = nil
			}
		default:
			r = nil
		}
	}
	g.mu.Unlock()
	if r != nil {
		r.evict(owner)
	}
}

// evictFenced evicts a room whose writes under claim the store refused for
// a newer claim, telling its members where the room went when the
// placement knows.
func (g *Registry) evictFenced(id string, claim Claim) {
	var owner *codec.Location
	c, err := g.claim(context.Background(), id)
	var elsewhere *ElsewhereError
	switch {
	case errors.As(err, &elsewhere):
		owner = &elsewhere.Owner
	case err == nil && c != claim:
		// The newer owner is gone already and the room is free: this
		// instance is stale all the same. Give the new claim back; the
		// members' next join starts the room afresh wherever it lands.
		g.release(id, c)
	}
	g.Evict(id, claim, owner)
}
