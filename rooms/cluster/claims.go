package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

var _ rooms.Placement = (*Node)(nil)

// maxClaimRounds bounds the compare-and-swap rounds of one claim: each
// lost round means another node changed the entry meanwhile.
const maxClaimRounds = 5

// Claim implements rooms.Placement. The first node to create the room's
// entry owns it. An entry of a node whose lease is gone, or names another
// incarnation, is taken over with a compare-and-swap, so that one node wins
// however many try at once. The claim's epoch is the entry's revision,
// which only grows within the bucket, after the bucket's generation.
func (n *Node) Claim(ctx context.Context, room string) (rooms.Claim, error) {
	n.mu.Lock()
	claims, rev, fatal, why := n.claims, n.leaseRev, n.fatal, n.leaseErr
	n.mu.Unlock()
	switch {
	case fatal != nil:
		return rooms.Claim{}, fmt.Errorf("%w: %w", rooms.ErrUnavailable, fatal)
	case n.nc.Status() != nats.CONNECTED:
		return rooms.Claim{}, fmt.Errorf("%w: NATS unreachable (%s): new rooms cannot be placed", rooms.ErrUnavailable, n.nc.Status())
	case rev == 0:
		return rooms.Claim{}, fmt.Errorf("%w: this node holds no cluster lease (is NATS reachable?): %v", rooms.ErrUnavailable, why)
	}
	key := token(room)
	mine := encode(claimEntry{Node: n.cfg.NodeID, Inc: n.inc, Since: time.Now().UnixMilli()})
	for range maxClaimRounds {
		rev, err := claims.Create(ctx, key, mine)
		if err == nil {
			return n.hold(room, rev), nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return rooms.Claim{}, unavailable("claim", room, err)
		}
		e, err := claims.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile: create it
		}
		if err != nil {
			return rooms.Claim{}, unavailable("read the claim of", room, err)
		}
		var owner claimEntry
		if err := decode(e.Value(), &owner); err != nil {
			return rooms.Claim{}, unavailable("read the claim of", room, err)
		}
		if owner.Node == n.cfg.NodeID && owner.Inc == n.inc {
			return n.hold(room, e.Revision()), nil
		}
		where, alive, err := n.lookup(ctx, owner)
		if err != nil {
			return rooms.Claim{}, unavailable("find the owner of", room, err)
		}
		if alive {
			return rooms.Claim{}, &rooms.ElsewhereError{Room: room, Owner: where}
		}
		rev, err = claims.Update(ctx, key, mine, e.Revision())
		if err == nil {
			n.log.Info("took over a room of a dead node", "room", room, "from", owner.Node, "incarnation", owner.Inc, "epoch", rev)
			return n.hold(room, rev), nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return rooms.Claim{}, unavailable("take over", room, err)
		}
	}
	return rooms.Claim{}, fmt.Errorf("%w: room %s: the directory changed under %d claims in a row", rooms.ErrUnavailable, room, maxClaimRounds)
}

func unavailable(what, room string, err error) error {
	return fmt.Errorf("%w: %s room %s: %w", rooms.ErrUnavailable, what, room, err)
}

// hold records a claim of this node.
func (n *Node) hold(room string, rev uint64) rooms.Claim {
	n.mu.Lock()
	n.held[room] = rev
	n.mu.Unlock()
	return n.claimOf(rev)
}

// claimOf is the claim of revision rev in the directory bound now.
func (n *Node) claimOf(rev uint64) rooms.Claim {
	n.mu.Lock()
	defer n.mu.Unlock()
	return rooms.Claim{Generation: n.generation, Epoch: rev}
}

// Release implements rooms.Placement: it deletes the room's entry only if
// it is still the revision this node claimed, so that a node can never
// delete another's claim.
func (n *Node) Release(ctx context.Context, room string, c rooms.Claim) error {
	n.mu.Lock()
	claims := n.claims
	if n.held[room] == c.Epoch {
		delete(n.held, room)
	}
	n.mu.Unlock()
	switch {
	case claims == nil:
		return errors.New("no directory")
	case n.nc.Status() != nats.CONNECTED:
		// Waiting would only slow a shutdown: the claim dies with the lease.
		return fmt.Errorf("NATS unreachable (%s): the claim lapses with this node's lease", n.nc.Status())
	}
	err := claims.Delete(ctx, token(room), jetstream.LastRevision(c.Epoch))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil // another node owns it now: nothing of ours to release
	}
	return err
}

// Lookup implements rooms.Placement: it reads the room's claim and its
// owner's lease.
func (n *Node) Lookup(ctx context.Context, room string) (codec.Location, bool, error) {
	n.mu.Lock()
	claims := n.claims
	n.mu.Unlock()
	if claims == nil || n.nc.Status() != nats.CONNECTED {
		return codec.Location{}, false, fmt.Errorf("NATS unreachable (%s)", n.nc.Status())
	}
	e, err := claims.Get(ctx, token(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return codec.Location{}, false, nil
	}
	if err != nil {
		return codec.Location{}, false, err
	}
	var owner claimEntry
	if err := decode(e.Value(), &owner); err != nil {
		return codec.Location{}, false, err
	}
	if owner.Node == n.cfg.NodeID && owner.Inc == n.inc {
		return codec.Location{}, false, nil
	}
	return n.lookup(ctx, owner)
}

// lookup finds the lease of a claim's owner: alive when it exists and
// names the same incarnation, and then where clients reach that node.
func (n *Node) lookup(ctx context.Context, owner claimEntry) (codec.Location, bool, error) {
	e, err := n.nodes.Get(ctx, token(owner.Node))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return codec.Location{}, false, nil
	}
	if err != nil {
		return codec.Location{}, false, err
	}
	var l lease
	if err := decode(e.Value(), &l); err != nil {
		return codec.Location{}, false, err
	}
	if l.Inc != owner.Inc {
		return codec.Location{}, false, nil // the node restarted: its old claims are dead
	}
	return l.Location, true, nil
}

// verifyClaims reads the entry of every room this node holds, after a
// time without a lease in which other nodes may have taken some over, and
// evicts the rooms it no longer owns.
func (n *Node) verifyClaims() {
	n.mu.Lock()
	held := make(map[string]uint64, len(n.held))
	for room, rev := range n.held {
		held[room] = rev
	}
	claims := n.claims
	n.mu.Unlock()
	lost := 0
	for room, rev := range held {
		ctx, cancel := n.ctx()
		e, err := claims.Get(ctx, token(room))
		var owner claimEntry
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Taken and released by another node: this instance is stale.
		case err != nil:
			cancel()
			n.log.Warn("could not check a room's claim; checking again later", "room", room, "err", err)
			n.mu.Lock()
			n.leaseRev = 0 // acquire runs again, and so does this check
			n.mu.Unlock()
			return
		case decode(e.Value(), &owner) == nil && owner.Node == n.cfg.NodeID && owner.Inc == n.inc:
			cancel()
			continue // still ours (claimed again meanwhile, maybe)
		}
		var where *codec.Location
		if owner.Node != "" {
			if loc, alive, err := n.lookup(ctx, owner); err == nil && alive {
				where = &loc
			}
		}
		cancel()
		n.mu.Lock()
		if n.held[room] == rev {
			delete(n.held, room)
		}
		n.mu.Unlock()
		lost++
		n.log.Warn("another node owns a room of this node now; moving its members there", "room", room, "owner", owner.Node)
		n.reg.Evict(room, n.claimOf(rev), where)
	}
	n.log.Info("checked this node's rooms against the directory", "rooms", len(held), "lost", lost)
}
