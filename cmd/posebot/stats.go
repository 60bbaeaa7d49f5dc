package main

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// histogram counts millisecond values: 1 ms buckets below one second, then
// 100 ms buckets up to a minute; larger values land in the last bucket.
// Recording is lock-free.
type histogram struct {
	buckets [fineBuckets + coarseBuckets + 1]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

const (
	fineBuckets   = 1000 // 0..999 ms, 1 ms each
	coarseBuckets = 600  // 1 000..60 999 ms, 100 ms each
)

func bucketOf(ms int64) int {
	switch {
	case ms < 0:
		return 0
	case ms < fineBuckets:
		return int(ms)
	case ms < fineBuckets+coarseBuckets*100:
		return fineBuckets + int((ms-fineBuckets)/100)
	}
	return fineBuckets + coarseBuckets
}

// bucketValue returns the upper edge of a bucket, in milliseconds.
func bucketValue(b int) float64 {
	if b < fineBuckets {
		return float64(b)
	}
	return float64(fineBuckets + (b-fineBuckets+1)*100)
}

func (h *histogram) record(ms int64) {
	h.buckets[bucketOf(ms)].Add(1)
	h.count.Add(1)
	h.noteMax(ms)
}

// noteMax raises the maximum to ms.
func (h *histogram) noteMax(ms int64) {
	for {
		cur := h.max.Load()
		if ms <= cur || h.max.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// add adds the values counted in t.
func (h *histogram) add(t *tally) {
	if t.count == 0 {
		return
	}
	for b, n := range t.buckets {
		if n > 0 {
			h.buckets[b].Add(n)
		}
	}
	h.count.Add(t.count)
	h.noteMax(t.max)
}

// summary returns the p50, p99 and maximum.
func (h *histogram) summary() quantiles {
	return quantiles{P50: h.quantile(0.5), P99: h.quantile(0.99), Max: ptr(float64(h.max.Load()))}
}

// tally counts values as a histogram does, for one goroutine, to be added
// to a histogram at once: many values cost it no atomic operations.
type tally struct {
	buckets [fineBuckets + coarseBuckets + 1]uint64
	count   uint64
	max     int64
}

func (t *tally) record(ms int64) {
	t.buckets[bucketOf(ms)]++
	t.count++
	t.max = max(t.max, ms)
}

// pairHistograms are the latency and staleness of one class of pairs.
type pairHistograms struct {
	latency, stale histogram
}

// quantile returns the value at quantile q (0..1), or 0 with no values.
func (h *histogram) quantile(q float64) float64 {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for b := range h.buckets {
		seen += h.buckets[b].Load()
		if seen >= rank {
			return min(bucketValue(b), float64(h.max.Load()))
		}
	}
	return float64(h.max.Load())
}

// Error kinds the bot counts.
const (
	errDial     = "dial"     // could not open a session
	errRefused  = "refused"  // the server refused the connection (its bound per address)
	errJoin     = "join"     // the join was refused or timed out
	errStream   = "stream"   // the session ended before the run did
	errSend     = "send"     // a pose could not be sent
	errProtocol = "protocol" // the server answered with an error
	errTimeout  = "timeout"  // a client did not get going in time
)

// counters are the run's totals.
type counters struct {
	posesSent       atomic.Uint64
	updatesReceived atomic.Uint64
	joined          atomic.Int64
	resyncs         atomic.Uint64
	moved           atomic.Uint64

	mu     sync.Mutex // guards errors
	errors map[string]uint64
}

func (c *counters) fail(kind string) {
	c.mu.Lock()
	if c.errors == nil {
		c.errors = make(map[string]uint64)
	}
	c.errors[kind]++
	c.mu.Unlock()
}

func (c *counters) errorCounts() (map[string]uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.errors))
	var total uint64
	for k, v := range c.errors {
		out[k] = v
		total += v
	}
	return out, total
}

// errorSummary renders error counts as "kind=n kind=n", sorted.
func errorSummary(errs map[string]uint64) string {
	if len(errs) == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(errs))
	for k := range errs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	s := ""
	for i, k := range kinds {
		if i > 0 {
			s += " "
		}
		s += k + "=" + strconv.FormatUint(errs[k], 10)
	}
	return s
}
