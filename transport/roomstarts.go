package transport

import (
	"net"
	"sync"
	"time"
)

// roomStarts bounds the rooms one address may start (by joining a room that
// does not run here, or through POST /api/rooms): each costs a store write
// and memory that outlives the room.
type roomStarts struct {
	rate, burst float64

	mu      sync.Mutex // guards buckets
	buckets map[string]*roomBucket
}

type roomBucket struct {
	tokens float64
	last   time.Time
}

// maxRoomBuckets bounds the addresses remembered; past it the full buckets
// (addresses that have not started a room for a while) are forgotten.
const maxRoomBuckets = 100000

func newRoomStarts(rate float64) *roomStarts {
	return &roomStarts{rate: rate, burst: 10 * rate, buckets: make(map[string]*roomBucket)}
}

// allow takes one room start for the address of addr at now.
func (l *roomStarts) allow(addr net.Addr, now time.Time) bool {
	key := addressKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxRoomBuckets {
			for k, old := range l.buckets {
				if old.tokens+now.Sub(old.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &roomBucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
