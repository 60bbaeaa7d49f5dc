package cluster

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/posecast/posecast/rooms"
)

// maxPending bounds the presence updates of one node held back while its
// snapshot is on the way or a gap is open; past it they are dropped, and
// the snapshot after covers them.
const maxPending = 10000

// remote is followLoop's knowledge of another node.
type remote struct {
	inc   string    // the incarnation followed
	heard time.Time // its last heartbeat or update
	// seq is the number of its last update applied to the collector; the
	// collector holds its presence exactly as of seq once synced.
	seq    uint64
	synced bool
	// hbSeq is the highest update number its heartbeats announced.
	hbSeq uint64
	// pending holds updates that came early: before the snapshot, or
	// after a gap.
	pending map[uint64]presenceUpdate
	// behind is since when the collector is known to lack some of the
	// node's updates; zero when it does not.
	behind   time.Time
	fetching bool // a snapshot request is under way
	checking bool // a lease check is under way
}

// Events of followLoop besides NATS messages.
type (
	reconnected  struct{}
	snapshotDone struct {
		node, inc string
		seq       uint64
		rooms     map[string]rooms.RoomPresence
		err       error
	}
	leaseChecked struct {
		node, inc string
		alive     bool
		err       error
	}
)

// onMessage passes a heartbeat, bye or presence update to followLoop.
// Runs in a NATS callback.
func (n *Node) onMessage(msg *nats.Msg) { n.post(msg) }

// followLoop follows the other nodes into the collector: their presence
// updates in order, a snapshot first and after any gap, and their deaths.
// A node is dead only when its lease is gone (or names a new incarnation);
// silence makes it a suspect whose lease is read every heartbeat. While
// this node's own NATS connection is down nothing is declared dead: the
// views freeze, and every node is read again by snapshot on reconnect.
// Runs in its own goroutine until Close.
func (n *Node) followLoop() {
	remotes := make(map[string]*remote)
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-n.quit:
			return
		case ev := <-n.events:
			switch ev := ev.(type) {
			case *nats.Msg:
				n.handle(remotes, ev)
			case snapshotDone:
				n.applySnapshot(remotes, ev)
			case leaseChecked:
				n.applyLeaseCheck(remotes, ev)
			case reconnected:
				n.log.Info("NATS connection back; reading every node's presence again")
				for node, r := range remotes {
					r.heard = time.Now()
					n.fetch(node, r)
				}
			}
		case <-t.C:
			n.check(remotes)
		}
	}
}

// handle takes one message from another node.
func (n *Node) handle(remotes map[string]*remote, msg *nats.Msg) {
	now := time.Now()
	switch {
	case strings.HasSuffix(msg.Subject, ".hb"), strings.HasSuffix(msg.Subject, ".bye"):
		parts := strings.Split(msg.Subject, ".")
		if len(parts) != 4 {
			return
		}
		node, err := untoken(parts[2])
		if err != nil || node == n.cfg.NodeID {
			return
		}
		if parts[3] == "bye" {
			var b bye
			if decode(msg.Data, &b) == nil && remotes[node] != nil && remotes[node].inc == b.Inc {
				n.drop(remotes, node, "it stopped")
			}
			return
		}
		var hb heartbeat
		if decode(msg.Data, &hb) != nil {
			return
		}
		r := n.follow(remotes, node, hb.Inc)
		r.heard = now
		r.hbSeq = max(r.hbSeq, hb.Seq)
		n.noteBehind(r, now)
	default:
		var u presenceUpdate
		if decode(msg.Data, &u) != nil || u.Node == n.cfg.NodeID || u.Node == "" {
			return
		}
		r := n.follow(remotes, u.Node, u.Inc)
		r.heard = now
		if u.Seq <= r.seq && r.synced {
			return // in the snapshot already
		}
		if len(r.pending) >= maxPending {
			clear(r.pending)
			r.synced = false // the snapshot asked for next covers them
		}
		r.pending[u.Seq] = u
		if r.synced {
			n.drain(u.Node, r)
		}
		n.noteBehind(r, now)
	}
}

// follow returns the remote of node at incarnation inc, starting to follow
// it (a snapshot first) when it is new. A new incarnation of a node
// replaces the old one at once: the old one's users leave.
func (n *Node) follow(remotes map[string]*remote, node, inc string) *remote {
	r := remotes[node]
	if r != nil && r.inc == inc {
		return r
	}
	if r != nil {
		n.drop(remotes, node, "it restarted")
	}
	r = &remote{inc: inc, heard: time.Now(), pending: make(map[uint64]presenceUpdate)}
	remotes[node] = r
	n.fetch(node, r)
	return r
}

// drain applies the node's pending updates that follow the last applied.
func (n *Node) drain(node string, r *remote) {
	for {
		u, ok := r.pending[r.seq+1]
		if !ok {
			break
		}
		delete(r.pending, u.Seq)
		r.seq = u.Seq
		n.cfg.Collector.Apply(node, rooms.PresenceUpdate{Seq: u.Seq, RoomSeq: u.RoomSeq, Room: u.Room, Joins: u.Joins, Leaves: u.Leaves, Gone: u.Gone})
	}
	maps.DeleteFunc(r.pending, func(seq uint64, _ presenceUpdate) bool { return seq <= r.seq })
}

// noteBehind records whether the collector lacks updates of the node.
func (n *Node) noteBehind(r *remote, now time.Time) {
	switch {
	case !r.synced || (len(r.pending) == 0 && r.hbSeq <= r.seq):
		r.behind = time.Time{}
	case r.behind.IsZero():
		r.behind = now
	}
}

// drop forgets a node: its users leave every collection.
func (n *Node) drop(remotes map[string]*remote, node, why string) {
	delete(remotes, node)
	n.cfg.Collector.DropNode(node)
	n.log.Info("dropped a node's users", "peer", node, "why", why)
}

// check runs every heartbeat: it asks again for snapshots that failed or
// are due (updates missing for two heartbeats: lost, not merely late), and
// reads the lease of every node silent for the suspect time.
func (n *Node) check(remotes map[string]*remote) {
	if n.nc.Status() != nats.CONNECTED {
		return // frozen: silence now says nothing of the others
	}
	now := time.Now()
	for node, r := range remotes {
		if !r.synced || (!r.behind.IsZero() && now.Sub(r.behind) > 2*n.cfg.HeartbeatInterval) {
			n.fetch(node, r)
		}
		if now.Sub(r.heard) > n.cfg.SuspectAfter && !r.checking {
			r.checking = true
			inc := r.inc
			n.wg.Go(func() { n.checkLease(node, inc) })
		}
	}
}

// fetch asks a node for its presence snapshot, unless a request is under
// way. The answer comes back to followLoop.
func (n *Node) fetch(node string, r *remote) {
	if r.fetching {
		return
	}
	r.fetching = true
	n.wg.Go(func() {
		res := n.requestPresence(node)
		select {
		case n.events <- res:
		case <-n.quit:
		}
	})
}

// applySnapshot makes a node's snapshot the collector's view of it, then
// applies the updates that came after it.
func (n *Node) applySnapshot(remotes map[string]*remote, res snapshotDone) {
	r := remotes[res.node]
	if r == nil {
		return // dropped meanwhile
	}
	r.fetching = false
	if res.err != nil {
		n.log.Debug("presence snapshot failed; asking again", "peer", res.node, "err", res.err)
		return
	}
	if res.inc != r.inc {
		// The node restarted between its last message and the answer:
		// follow the new incarnation from this snapshot.
		n.cfg.Collector.DropNode(res.node)
		r.inc, r.hbSeq = res.inc, 0
		clear(r.pending)
	}
	n.cfg.Collector.SetNode(res.node, res.rooms)
	r.seq, r.synced = res.seq, true
	n.drain(res.node, r)
	n.noteBehind(r, time.Now())
}

// applyLeaseCheck drops a suspect whose lease is gone.
func (n *Node) applyLeaseCheck(remotes map[string]*remote, res leaseChecked) {
	r := remotes[res.node]
	if r == nil || r.inc != res.inc {
		return
	}
	r.checking = false
	switch {
	case res.err != nil:
		n.log.Debug("could not read a silent node's lease", "peer", res.node, "err", res.err)
	case !res.alive:
		n.drop(remotes, res.node, fmt.Sprintf("silent for %v and its lease is gone", time.Since(r.heard).Round(time.Millisecond)))
	}
}

// checkLease reads a node's lease and reports back whether incarnation inc
// still holds it.
func (n *Node) checkLease(node, inc string) {
	res := leaseChecked{node: node, inc: inc}
	n.mu.Lock()
	nodes := n.nodes
	n.mu.Unlock()
	if nodes == nil {
		res.err = errors.New("no directory yet")
	} else {
		ctx, cancel := n.ctx()
		e, err := nodes.Get(ctx, token(node))
		cancel()
		var l lease
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			res.err = err
		case decode(e.Value(), &l) != nil:
		default:
			res.alive = l.Inc == inc
		}
	}
	select {
	case n.events <- res:
	case <-n.quit:
	}
}

// requestPresence asks a node for its presence and gathers the chunks of
// its answer.
func (n *Node) requestPresence(node string) snapshotDone {
	res := snapshotDone{node: node}
	inbox := n.nc.NewInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		res.err = err
		return res
	}
	defer sub.Unsubscribe()
	if err := n.nc.PublishRequest(n.cfg.Prefix+".rpc."+token(node)+".presence", inbox, nil); err != nil {
		res.err = err
		return res
	}
	deadline := time.Now().Add(n.cfg.RequestTimeout)
	got := 0
	for of := 1; got < of; {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			res.err = fmt.Errorf("chunk %d of %d: %w", got+1, of, err)
			return res
		}
		var c presenceChunk
		if err := decode(msg.Data, &c); err != nil {
			res.err = err
			return res
		}
		if got == 0 {
			res.inc, res.seq, res.rooms, of = c.Inc, c.Seq, make(map[string]rooms.RoomPresence), c.Of
		} else if c.Inc != res.inc || c.Seq != res.seq {
			res.err = errors.New("chunks of two snapshots")
			return res
		}
		for room, users := range c.Rooms {
			if res.rooms[room] == nil {
				res.rooms[room] = rooms.RoomPresence{}
			}
			maps.Copy(res.rooms[room], users)
		}
		got++
	}
	return res
}
