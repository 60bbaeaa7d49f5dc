package transport

import "sync/atomic"

// traffic counts what one session moved. Each session counts its own, on
// the cores that serve it, and /metrics sums them (with what ended
// sessions moved): no counter is shared by every datagram of the node.
type traffic struct {
	datagramsIn, datagramsOut atomic.Uint64
	bytesIn, bytesOut         atomic.Uint64
	posesIn                   atomic.Uint64
}

// addTo adds what t counted to into.
func (t *traffic) addTo(into *traffic) {
	into.datagramsIn.Add(t.datagramsIn.Load())
	into.datagramsOut.Add(t.datagramsOut.Load())
	into.bytesIn.Add(t.bytesIn.Load())
	into.bytesOut.Add(t.bytesOut.Load())
	into.posesIn.Add(t.posesIn.Load())
}

// trafficTotal returns one of the node's traffic counts: the ended
// sessions' and the open ones'.
func (s *Server) trafficTotal(count func(*traffic) *atomic.Uint64) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := count(&s.ended).Load()
	for ss := range s.sessions {
		n += count(&ss.traffic).Load()
	}
	return float64(n)
}
