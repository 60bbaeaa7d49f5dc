package transport

import (
	"sync"
	"sync/atomic"

	"github.com/posecast/posecast/codec"
)

// datagramQueue is a session's outbound datagrams: pose updates, sent whole
// and newest first, and ping echoes. Push never blocks.
//
// At most one update waits: a newer one replaces it, so that a receiver whose
// path cannot keep up gets every other update, then every fourth..., each
// complete, and every update again once its path has drained. An update whose
// first datagram was taken is taken to its end, unless the queue closes. Ping
// echoes go first, between two datagrams of an update if need be: that delays
// the update's next part, and tears nothing.
type datagramQueue struct {
	ready chan struct{} // signalled when something is pushed

	mu      sync.Mutex // guards the following
	sending poseUpdate // the update being taken
	next    int        // the datagram of sending taken next
	waiting poseUpdate // the update to take once sending is done
	pings   [pingQueueLen][]byte
	ping    int // index of the oldest of pings
	npings  int
	closed  bool
}

// pingQueueLen bounds the ping echoes a session holds. Pings come at most at
// the pose rate, and an echo that waits is a poor sample of the round trip:
// a full queue drops the oldest.
const pingQueueLen = 4

// poseUpdate is one pose update as rooms.Member.SendPoses takes it. The zero
// value is no update.
type poseUpdate struct {
	seq       uint32
	parts     [][][]byte // shared: never modified
	datagrams int        // len(parts), or 1 for a heartbeat
}

// outDatagram is one datagram to send: a ping echo as it is, or datagram part
// of parts of pose update seq (a heartbeat when parts is 0).
type outDatagram struct {
	echo        []byte
	seq         uint32
	part, parts uint8
	runs        [][]byte
}

// appendTo appends d's bytes to dst.
func (d *outDatagram) appendTo(dst []byte) []byte {
	if d.echo != nil {
		return append(dst, d.echo...)
	}
	return codec.AppendPoseUpdate(dst, d.seq, d.part, d.parts, d.runs)
}

func newDatagramQueue() *datagramQueue {
	return &datagramQueue{ready: make(chan struct{}, 1)}
}

// push queues pose update seq (no parts: a heartbeat) and reports whether it
// replaced an update that waited unsent. A closed queue takes nothing.
func (q *datagramQueue) push(seq uint32, parts [][][]byte) (superseded bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	superseded = q.waiting.datagrams > 0
	q.waiting = poseUpdate{seq: seq, parts: parts, datagrams: max(1, len(parts))}
	q.mu.Unlock()
	q.signal()
	return superseded
}

// pushPing queues a ping echo and reports whether it dropped the oldest to
// make room. A closed queue takes nothing.
func (q *datagramQueue) pushPing(b []byte) (dropped bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.npings == len(q.pings) {
		q.pings[q.ping] = nil
		q.ping = (q.ping + 1) % len(q.pings)
		q.npings--
		dropped = true
	}
	q.pings[(q.ping+q.npings)%len(q.pings)] = b
	q.npings++
	q.mu.Unlock()
	q.signal()
	return dropped
}

func (q *datagramQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the next datagram to send: the oldest ping echo, else the next
// datagram of the update being sent, else the first of the one waiting. It
// reports false when there is none or the queue is closed.
func (q *datagramQueue) pop() (d outDatagram, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return d, false
	case q.npings > 0:
		d.echo = q.pings[q.ping]
		q.pings[q.ping] = nil
		q.ping = (q.ping + 1) % len(q.pings)
		q.npings--
		return d, true
	case q.next == q.sending.datagrams:
		if q.waiting.datagrams == 0 {
			return d, false
		}
		q.sending, q.waiting, q.next = q.waiting, poseUpdate{}, 0
	}
	u := &q.sending
	d.seq, d.part, d.parts = u.seq, uint8(q.next), uint8(len(u.parts))
	if len(u.parts) > 0 {
		d.runs = u.parts[q.next]
	}
	q.next++
	if q.next == u.datagrams {
		*u, q.next = poseUpdate{}, 0 // let the room's buffers go
	}
	return d, true
}

// len returns how many datagrams wait: ping echoes, the rest of the update
// being sent and the update waiting.
func (q *datagramQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.npings + q.sending.datagrams - q.next + q.waiting.datagrams
}

// close drops what waits, cutting the update being sent, and makes later
// pushes and pops do nothing.
func (q *datagramQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.sending, q.waiting, q.next = poseUpdate{}, poseUpdate{}, 0
	clear(q.pings[:])
	q.npings = 0
}

// frameQueue is a session's queue of outbound control frames, bounded in
// bytes: a session whose backlog passes the bound is too slow to keep, and
// push says so instead of queueing. Push never blocks.
type frameQueue struct {
	ready chan struct{}
	limit int
	node  *nodeBacklog // the node's sessions' together; nil: unbounded

	mu      sync.Mutex // guards the following
	frames  [][]byte
	pending int
	closed  bool
	held    bool // takeAll takes nothing until release
}

// newFrameQueue returns a queue of at most limit bytes, counted in node
// too unless it is nil.
func newFrameQueue(limit int, node *nodeBacklog) *frameQueue {
	return &frameQueue{ready: make(chan struct{}, 1), limit: limit, node: node}
}

// push queues frame. It returns false, queueing nothing, when the backlog
// would pass the limit, when the node's backlogs together are over theirs
// and this one is among the big (nodeBacklog), or when the queue is closed.
// A frame larger than the limit (a big room's snapshot) goes through when
// nothing else is pending, so that only a session that falls behind is
// refused.
func (q *frameQueue) push(frame []byte) bool {
	q.mu.Lock()
	if q.closed || (q.pending > 0 && q.pending+len(frame) > q.limit) || q.node.refuses(q.pending, len(frame)) {
		q.mu.Unlock()
		return false
	}
	q.frames = append(q.frames, frame)
	q.pending += len(frame)
	q.node.add(len(frame))
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// hold keeps the writer from taking frames until release; pushes go on.
func (q *frameQueue) hold() {
	q.mu.Lock()
	q.held = true
	q.mu.Unlock()
}

// release lets the writer take what was held, and what follows.
func (q *frameQueue) release() {
	q.mu.Lock()
	q.held = false
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// takeAll moves every queued frame to dst, unless the queue is held and
// still open: a closed queue gives up what it has, so that a session that
// ends mid-join still writes its last words. Their bytes count against the
// limit until the writer reports them written.
func (q *frameQueue) takeAll(dst [][]byte) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held && !q.closed {
		return dst
	}
	dst = append(dst, q.frames...)
	clear(q.frames)
	q.frames = q.frames[:0]
	return dst
}

// written releases n bytes taken by takeAll and now written.
func (q *frameQueue) written(n int) {
	q.mu.Lock()
	q.pending -= n
	q.node.add(-n)
	q.mu.Unlock()
}

// discard releases what is still queued, once the writer has stopped.
func (q *frameQueue) discard() {
	q.mu.Lock()
	q.node.add(-q.pending)
	q.pending = 0
	clear(q.frames)
	q.frames = nil
	q.mu.Unlock()
}

// nodeBacklog is what a node's frame queues hold together. Past its limit a
// queue that holds cut bytes or more takes nothing more: the sessions
// furthest behind are closed as slow consumers before the node runs out of
// memory, and those that keep up go on.
type nodeBacklog struct {
	limit, cut int
	total      atomic.Int64
}

// refuses reports whether a queue holding pending bytes may not take n more.
func (b *nodeBacklog) refuses(pending, n int) bool {
	return b != nil && pending >= b.cut && b.total.Load()+int64(n) > int64(b.limit)
}

func (b *nodeBacklog) add(n int) {
	if b != nil {
		b.total.Add(int64(n))
	}
}

// pendingBytes returns the bytes queued or being written.
func (q *frameQueue) pendingBytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// close makes later pushes fail.
func (q *frameQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
