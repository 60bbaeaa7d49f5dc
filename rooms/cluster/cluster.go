// Package cluster makes posecast nodes one cluster over NATS. A room lives
// on one node at a time: the node claims it in a JetStream KV directory
// with a compare-and-swap, and the claim holds while the node's lease (a
// key renewed every LeaseTTL/3 in a bucket whose TTL expires it) lives.
// Heartbeats on core NATS warn of a silent node early; the lease alone
// decides that it is dead. Every node publishes its rooms' presence
// updates, numbered, and follows every other node's into a
// rooms.Collector, repairing a gap with a snapshot over request/reply and
// dropping a dead node's users. Poses never touch NATS, and rooms already
// running never wait on it.
//
// Node implements rooms.Placement. Make it with New, give it to the
// registry's Config, Start it once the registry exists, and Close it after
// the registry has closed (and released its claims).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// Config configures a Node. Conn, NodeID, Collector and Advertise are
// required; the zero value of every other field means its default.
type Config struct {
	// Conn is the node's NATS connection. The caller connects it (with
	// unlimited reconnects and a short ping interval) and closes it after
	// Close.
	Conn *nats.Conn
	// NodeID names the node in the cluster. Two live processes must not
	// share it; a restart with the same id replaces the process before.
	NodeID string
	// Collector receives the presence of every node's rooms.
	Collector *rooms.Collector
	// Advertise returns where clients reach this node: its WebTransport
	// URL and its certificates' hashes, read at every lease renewal so
	// that a rotated certificate reaches the directory.
	Advertise func() codec.Location
	// Load, when set, returns the node's sessions and live rooms, which
	// its lease shows.
	Load func() (sessions, rooms int)
	// Prefix is the first token of the cluster's subjects and the prefix of
	// its buckets: nodes with the same prefix on one NATS are one cluster.
	// Defaults to "pc".
	Prefix string
	// Replicas is how many NATS servers keep each directory bucket: 3 in a
	// production cluster of three NATS servers. Defaults to 1.
	Replicas int
	// HeartbeatInterval is how often the node says it is alive. Defaults
	// to 1s.
	HeartbeatInterval time.Duration
	// SuspectAfter is how long a node may stay silent before the others
	// check its lease. Defaults to three heartbeats.
	SuspectAfter time.Duration
	// LeaseTTL is how long a node's lease outlives its last renewal: how
	// long after a crash its rooms can be claimed by others. It is renewed
	// every LeaseTTL/3. Defaults to 6s.
	LeaseTTL time.Duration
	// RequestTimeout bounds each NATS request the node makes. Defaults to 2s.
	RequestTimeout time.Duration
	// Logger receives the node's logs. Defaults to slog.Default().
	Logger *slog.Logger
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func (c Config) withDefaults() (Config, error) {
	if c.Conn == nil || c.NodeID == "" || c.Collector == nil || c.Advertise == nil {
		return c, errors.New("cluster: Conn, NodeID, Collector and Advertise are required")
	}
	if c.Prefix == "" {
		c.Prefix = "pc"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.SuspectAfter == 0 {
		c.SuspectAfter = 3 * c.HeartbeatInterval
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 6 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case !validPrefix.MatchString(c.Prefix):
		return c, fmt.Errorf("cluster: prefix %q: want 1 to 32 of A-Z a-z 0-9 _ -", c.Prefix)
	case !rooms.ValidID(c.NodeID):
		return c, fmt.Errorf("cluster: node id %q: want 1 to 64 of A-Z a-z 0-9 _ . : @ -", c.NodeID)
	case c.Replicas < 1 || c.Replicas > 5:
		return c, fmt.Errorf("cluster: replicas %d not in 1..5", c.Replicas)
	case c.HeartbeatInterval <= 0 || c.SuspectAfter < c.HeartbeatInterval:
		return c, errors.New("cluster: the suspect time must be at least one heartbeat")
	case c.LeaseTTL < time.Second || c.LeaseTTL < 2*c.HeartbeatInterval:
		return c, errors.New("cluster: the lease TTL must be at least 1s and two heartbeats")
	}
	return c, nil
}

// ErrDuplicateNode reports a node id that a live process of the cluster
// uses already.
var ErrDuplicateNode = errors.New("cluster: another live node has this node id")

// Node is this process as a member of the cluster.
type Node struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	inc     string // this incarnation
	started time.Time
	quit    chan struct{}
	// base ends when Close begins: requests in flight give up.
	base       context.Context
	cancelBase context.CancelFunc
	wg         sync.WaitGroup
	reg        *rooms.Registry // set by Start

	subj struct{ hb, bye, presence, rpc, hbAll, byeAll, presenceAll string }

	// published is the seq of the latest presence update handed to NATS
	// (or given up on): heartbeats carry it. It only grows.
	published atomic.Uint64
	// verifying is set while verifyClaims runs.
	verifying atomic.Bool
	updates   chan rooms.PresenceUpdate // to publishLoop
	events    chan any                  // to followLoop: messages and results

	mu sync.Mutex // guards the following
	// nodes and claims are the buckets, once bound; generation is the
	// claims bucket's (its creation time).
	nodes, claims jetstream.KeyValue
	generation    int64
	leaseRev      uint64 // revision of our lease; 0 while we hold none
	leaseErr      error  // why we hold none
	held          map[string]uint64
	fatal         error // set once another process took our node id
	closed        bool
}

// New checks cfg and returns a node that has not started.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	base, cancel := context.WithCancel(context.Background())
	n := &Node{
		base:       base,
		cancelBase: cancel,
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeID),
		nc:         cfg.Conn,
		js:         js,
		inc:        hex.EncodeToString(b[:]),
		quit:       make(chan struct{}),
		updates:    make(chan rooms.PresenceUpdate, 4096),
		events:     make(chan any, 4096),
		held:       make(map[string]uint64),
		leaseErr:   errors.New("no lease yet"),
	}
	p, node := cfg.Prefix, token(cfg.NodeID)
	n.subj.hb = p + ".node." + node + ".hb"
	n.subj.bye = p + ".node." + node + ".bye"
	n.subj.rpc = p + ".rpc." + node + ".presence"
	n.subj.presence = p + ".presence."
	n.subj.hbAll = p + ".node.*.hb"
	n.subj.byeAll = p + ".node.*.bye"
	n.subj.presenceAll = p + ".presence.>"
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Incarnation returns this process's incarnation: a restart makes a new one.
func (n *Node) Incarnation() string { return n.inc }

// Start joins the cluster with the node's registry: it follows the other
// nodes' presence into the collector, publishes its own rooms' presence,
// and keeps its lease and heartbeat. It does not wait for NATS: until the
// node holds its lease, claims fail as unavailable (see Ready and
// WaitLease). Its goroutines run until Close.
func (n *Node) Start(reg *rooms.Registry) error {
	n.reg = reg
	subs := []struct {
		subject string
		handler nats.MsgHandler
	}{
		{n.subj.hbAll, n.onMessage},
		{n.subj.byeAll, n.onMessage},
		{n.subj.presenceAll, n.onMessage},
		{n.subj.rpc, n.answerPresence},
	}
	for _, s := range subs {
		sub, err := n.nc.Subscribe(s.subject, s.handler)
		if err != nil {
			return fmt.Errorf("cluster: subscribe %s: %w", s.subject, err)
		}
		// A collector that falls behind repairs by snapshot; let NATS
		// buffer generously rather than cut the subscription.
		sub.SetPendingLimits(1<<16, 64<<20)
	}
	n.nc.SetReconnectHandler(func(*nats.Conn) { n.post(reconnected{}) })
	n.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		select {
		case <-n.quit:
		default:
			n.log.Warn("NATS connection lost; rooms go on, new rooms wait for it", "err", err)
		}
	})
	// Our own rooms' presence goes to the collector directly, and to the
	// other nodes through publishLoop.
	stopFollow := n.cfg.Collector.Follow(n.cfg.NodeID, reg)
	stopWatch := reg.WatchPresence(func(uint64, map[string]rooms.RoomPresence) {}, func(u rooms.PresenceUpdate) {
		select {
		case n.updates <- u:
		default:
			// The others see the gap in the numbers and ask for a snapshot.
			n.markPublished(u.Seq)
		}
	})
	n.wg.Go(n.leaseLoop)
	n.wg.Go(n.publishLoop)
	n.wg.Go(n.followLoop)
	n.wg.Go(func() {
		<-n.quit
		stopWatch()
		stopFollow()
	})
	return nil
}

// WaitLease waits until the node holds its lease, or ctx ends. It returns
// ErrDuplicateNode at once when another live process has the node's id.
func (n *Node) WaitLease(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		rev, fatal, why := n.leaseState()
		switch {
		case fatal != nil:
			return fatal
		case rev != 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: no lease yet: %w", why)
		case <-t.C:
		}
	}
}

// Ready reports whether the node can place new rooms: it is connected to
// NATS and holds its lease. Rooms it runs are served either way.
func (n *Node) Ready() error {
	rev, fatal, why := n.leaseState()
	switch {
	case fatal != nil:
		return fatal
	case n.nc.Status() != nats.CONNECTED:
		return fmt.Errorf("NATS unreachable (%s): new rooms cannot be placed", n.nc.Status())
	case rev == 0:
		return fmt.Errorf("no cluster lease: new rooms cannot be placed: %w", why)
	}
	return nil
}

// leaseState returns the lease's revision (0 when the node holds none),
// why it holds none, and the fatal error that stopped the node, if any.
func (n *Node) leaseState() (rev uint64, fatal, why error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaseRev, n.fatal, n.leaseErr
}

// Close leaves the cluster in good order: it says bye (the others drop
// this node's users at once), deletes its lease and stops its goroutines.
// Call it after the registry has closed, which releases the claims.
func (n *Node) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	close(n.quit)
	n.cancelBase()
	n.wg.Wait()
	// leaseLoop has stopped: the lease's revision is its last.
	n.mu.Lock()
	rev, nodes := n.leaseRev, n.nodes
	n.leaseRev = 0
	n.mu.Unlock()
	if n.nc.Status() == nats.CONNECTED {
		n.nc.Publish(n.subj.bye, encode(bye{Inc: n.inc}))
		if rev != 0 && nodes != nil {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			if err := nodes.Delete(ctx, token(n.cfg.NodeID), jetstream.LastRevision(rev)); err != nil {
				n.log.Warn("lease not deleted; it expires by itself", "err", err)
			}
			cancel()
		}
		n.nc.Flush()
	}
}

// markPublished raises published to seq.
func (n *Node) markPublished(seq uint64) {
	for {
		cur := n.published.Load()
		if seq <= cur || n.published.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// post hands an event to followLoop without blocking a NATS callback; a
// full queue drops it, which the numbers and heartbeats repair.
func (n *Node) post(ev any) {
	select {
	case n.events <- ev:
	default:
	}
}

// ctx returns a context bounded by the request timeout and by Close.
func (n *Node) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(n.base, n.cfg.RequestTimeout)
}
