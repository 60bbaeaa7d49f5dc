package transport

import "sync"

// datagramQueue is a session's bounded queue of outbound datagrams. When
// full it drops the oldest: a newer pose update supersedes an older one, so
// the freshest traffic goes first. Push never blocks.
type datagramQueue struct {
	ready chan struct{} // signalled when the queue becomes non-empty

	mu    sync.Mutex // guards the following
	buf   [][]byte   // ring
	head  int
	count int
}

func newDatagramQueue(size int) *datagramQueue {
	return &datagramQueue{ready: make(chan struct{}, 1), buf: make([][]byte, size)}
}

// push queues b and reports whether it dropped an older datagram to make room.
func (q *datagramQueue) push(b []byte) (dropped bool) {
	q.mu.Lock()
	if q.count == len(q.buf) {
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.count--
		dropped = true
	}
	q.buf[(q.head+q.count)%len(q.buf)] = b
	q.count++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// len returns how many datagrams wait.
func (q *datagramQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

// pop takes the oldest datagram, or nil when the queue is empty.
func (q *datagramQueue) pop() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count == 0 {
		return nil
	}
	b := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.count--
	return b
}

// frameQueue is a session's queue of outbound control frames, bounded in
// bytes: a session whose backlog passes the bound is too slow to keep, and
// push says so instead of queueing. Push never blocks.
type frameQueue struct {
	ready chan struct{}
	limit int

	mu      sync.Mutex // guards the following
	frames  [][]byte
	pending int
	closed  bool
	held    bool // takeAll takes nothing until release
}

func newFrameQueue(limit int) *frameQueue {
	return &frameQueue{ready: make(chan struct{}, 1), limit: limit}
}

// push queues frame. It returns false, queueing nothing, when the backlog
// would pass the limit or the queue is closed. A frame larger than the limit
// (a big room's snapshot) goes through when nothing else is pending, so that
// only a session that falls behind is refused.
func (q *frameQueue) push(frame []byte) bool {
	q.mu.Lock()
	if q.closed || (q.pending > 0 && q.pending+len(frame) > q.limit) {
		q.mu.Unlock()
		return false
	}
	q.frames = append(q.frames, frame)
	q.pending += len(frame)
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
	q.mu.Unlock()
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
