package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// leaseLoop keeps the node's lease and says it is alive: every heartbeat it
// publishes one, and every LeaseTTL/3 it renews the lease, taking it (again)
// when it holds none. Runs in its own goroutine until Close.
func (n *Node) leaseLoop() {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	var beat uint64
	var renewed time.Time // when the lease was last written
	for {
		if n.nc.Status() == nats.CONNECTED {
			// Only the holder of the lease speaks for the node id: a
			// duplicate that was refused says nothing.
			if n.keepLease(&renewed) {
				beat++
				n.nc.Publish(n.subj.hb, encode(heartbeat{Inc: n.inc, Beat: beat, Seq: n.published.Load()}))
			}
		} else {
			n.lapseIfExpired(renewed)
		}
		select {
		case <-n.quit:
			return
		case <-t.C:
		}
	}
}

// keepLease takes the lease when the node holds none and renews it when it
// is due. renewed is when it was last written. It reports whether the node
// holds its lease.
func (n *Node) keepLease(renewed *time.Time) bool {
	if err := n.bind(); err != nil {
		n.setLeaseErr(err)
		return false
	}
	n.mu.Lock()
	rev, fatal := n.leaseRev, n.fatal
	n.mu.Unlock()
	switch {
	case fatal != nil:
		return false
	case rev == 0:
		lapsed := !renewed.IsZero()
		if n.acquire() {
			*renewed = time.Now()
			if lapsed && !n.verifying.Swap(true) {
				// Others may have taken our rooms while we held no lease.
				// One read per room can outlast a lease: renewals go on
				// meanwhile.
				n.wg.Go(func() {
					defer n.verifying.Store(false)
					n.verifyClaims()
				})
			}
		}
	case time.Since(*renewed) >= n.cfg.LeaseTTL/3:
		if n.renew(rev) {
			*renewed = time.Now()
		} else {
			n.lapseIfExpired(*renewed)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaseRev != 0
}

// bind finds or makes the directory's buckets.
func (n *Node) bind() error {
	n.mu.Lock()
	bound := n.nodes != nil && n.claims != nil
	n.mu.Unlock()
	if bound {
		return nil
	}
	p := n.cfg.Prefix
	nodes, err := n.bucket(jetstream.KeyValueConfig{
		Bucket:      p + "_nodes",
		Description: "posecast node leases",
		TTL:         n.cfg.LeaseTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s_nodes: %w", p, err)
	}
	claims, err := n.bucket(jetstream.KeyValueConfig{
		Bucket:      p + "_rooms",
		Description: "posecast room claims",
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s_rooms: %w", p, err)
	}
	// The claims' revisions start again in a bucket made anew; its
	// creation time keeps them greater than the old bucket's in the store's
	// fence.
	ctx, cancel := n.ctx()
	status, err := claims.Status(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("bucket %s_rooms: %w", p, err)
	}
	bs, ok := status.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return fmt.Errorf("bucket %s_rooms: no creation time in its status", p)
	}
	n.mu.Lock()
	n.nodes, n.claims, n.generation = nodes, claims, bs.StreamInfo().Created.UnixNano()
	n.mu.Unlock()
	return nil
}

// bucket binds the bucket of cfg, creating it if no node has.
func (n *Node) bucket(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	kv, err := n.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = n.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = n.js.KeyValue(ctx, cfg.Bucket) // another node made it first
		}
	}
	return kv, err
}

// acquire takes the node's lease. A lease of the same id left by a process
// that is silent (this node's previous life) is replaced; one whose
// process still sends heartbeats means the id is taken, which is fatal.
// It reports whether the node holds its lease.
func (n *Node) acquire() bool {
	ctx, cancel := n.ctx()
	defer cancel()
	key := token(n.cfg.NodeID)
	rev, err := n.nodes.Create(ctx, key, encode(n.leaseValue()))
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev, err = n.replace(key)
	}
	if err != nil {
		n.setLeaseErr(err)
		if errors.Is(err, ErrDuplicateNode) {
			n.fail(err)
		}
		return false
	}
	n.mu.Lock()
	n.leaseRev, n.leaseErr = rev, nil
	n.mu.Unlock()
	n.log.Info("holding the cluster lease", "incarnation", n.inc, "ttl", n.cfg.LeaseTTL)
	return true
}

// replace takes over a lease of this node's id that another incarnation
// left, once it is clear that that incarnation is silent.
func (n *Node) replace(key string) (uint64, error) {
	ctx, cancel := n.ctx()
	e, err := n.nodes.Get(ctx, key)
	cancel()
	if err != nil {
		return 0, err // gone meanwhile: the next try creates it
	}
	var old lease
	if err := decode(e.Value(), &old); err != nil {
		return 0, err
	}
	if old.Inc != n.inc {
		alive, err := n.heardFrom(old.Inc)
		if err != nil {
			return 0, err
		}
		if alive {
			return 0, fmt.Errorf("%w: %q (incarnation %s sends heartbeats)", ErrDuplicateNode, n.cfg.NodeID, old.Inc)
		}
		n.log.Info("replacing the lease of this node's previous incarnation", "previous", old.Inc)
	}
	ctx, cancel = n.ctx()
	defer cancel()
	return n.nodes.Update(ctx, key, encode(n.leaseValue()), e.Revision())
}

// heardFrom listens to this node id's heartbeats for the suspect time and
// reports whether incarnation inc sent one.
func (n *Node) heardFrom(inc string) (bool, error) {
	sub, err := n.nc.SubscribeSync(n.subj.hb)
	if err != nil {
		return false, err
	}
	defer sub.Unsubscribe()
	deadline := time.Now().Add(n.cfg.SuspectAfter)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var hb heartbeat
		if decode(msg.Data, &hb) == nil && hb.Inc == inc {
			return true, nil
		}
	}
}

// renew writes the lease again, which restarts its TTL. A lease someone
// else wrote (or that expired) is no longer ours: the node holds none until
// acquire takes it again. It reports success.
func (n *Node) renew(rev uint64) bool {
	ctx, cancel := n.ctx()
	defer cancel()
	next, err := n.nodes.Update(ctx, token(n.cfg.NodeID), encode(n.leaseValue()), rev)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err == nil:
		if n.leaseRev == rev {
			n.leaseRev = next
		}
		return true
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		n.log.Warn("the cluster lease lapsed or was replaced; taking it again and checking this node's rooms", "err", err)
		n.leaseRev, n.leaseErr = 0, err
	default:
		n.leaseErr = err
	}
	return false
}

// lapseIfExpired stops the node from claiming once its lease has surely
// expired: renewed longer than a TTL ago.
func (n *Node) lapseIfExpired(renewed time.Time) {
	if renewed.IsZero() || time.Since(renewed) < n.cfg.LeaseTTL {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leaseRev != 0 {
		n.log.Warn("the cluster lease has expired: no new rooms until it is taken again")
		n.leaseRev, n.leaseErr = 0, errors.New("the lease expired while NATS was unreachable")
	}
}

func (n *Node) setLeaseErr(err error) {
	n.mu.Lock()
	n.leaseErr = err
	n.mu.Unlock()
}

// leaseValue is what the lease says of this node now.
func (n *Node) leaseValue() lease {
	l := lease{Inc: n.inc, Location: n.cfg.Advertise(), Started: n.started.UnixMilli()}
	l.Location.Node = n.cfg.NodeID
	if n.cfg.Load != nil {
		l.Sessions, l.Rooms = n.cfg.Load()
	}
	return l
}

// fail stops the node for good: another process has its id. Its rooms are
// evicted (that process, or whoever claims them next, serves them) and no
// claim is made again.
func (n *Node) fail(err error) {
	n.mu.Lock()
	n.fatal = err
	held := n.held
	n.held = make(map[string]uint64)
	n.mu.Unlock()
	n.log.Error("leaving the cluster", "err", err)
	for room, rev := range held {
		n.reg.Evict(room, n.claimOf(rev), nil)
	}
}
