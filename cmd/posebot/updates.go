package main

import "github.com/posecast/posecast/codec"

// seqWindow is how many pose updates behind the newest one an update is
// settled: by then the parts it will get have come, and those it has not
// are lost.
const seqWindow = 16

// updateLog follows which parts of each pose update (seq) a bot received,
// to count the updates it got torn (some parts but not all) and those it
// never saw at all (skipped whole). Each session is followed on its own:
// the room numbers each member's updates. Only the session's datagram
// goroutine uses it while the session runs.
type updateLog struct {
	// The session's, since its first update.
	started       bool
	first, newest uint32
	seen          uint64                // updates with a part received
	open          map[uint32]*partsSeen // the updates not yet settled
	// The totals of the sessions ended.
	updates, torn, skipped uint64
}

// partsSeen is which parts of one update arrived.
type partsSeen struct {
	got   [4]uint64
	count int
	parts int
}

// add notes a pose update received. Heartbeats number no update of their
// own; a part that comes after its update was settled is not counted.
func (l *updateLog) add(u codec.PoseUpdate) {
	if u.Parts == 0 {
		return
	}
	if !l.started {
		l.started, l.first, l.newest = true, u.Seq, u.Seq
		l.open = make(map[uint32]*partsSeen)
	}
	if int32(u.Seq-l.first) < 0 || int32(l.newest-u.Seq) >= seqWindow {
		return
	}
	if int32(u.Seq-l.newest) > 0 {
		l.newest = u.Seq
		for s, p := range l.open {
			if int32(l.newest-s) >= seqWindow {
				if p.count < p.parts {
					l.torn++
				}
				delete(l.open, s)
			}
		}
	}
	p := l.open[u.Seq]
	if p == nil {
		p = &partsSeen{parts: int(u.Parts)}
		l.open[u.Seq] = p
		l.seen++
	}
	if bit := uint64(1) << (u.Part % 64); p.got[u.Part/64]&bit == 0 {
		p.got[u.Part/64] |= bit
		p.count++
	}
}

// end closes the session's count: the updates between its first and its
// newest that never came were skipped whole. Updates still open are counted
// as seen, not as torn: their last parts may have been on the way.
func (l *updateLog) end() {
	if !l.started {
		return
	}
	l.updates += l.seen
	l.skipped += uint64(l.newest-l.first) + 1 - l.seen
	l.started, l.seen, l.open = false, 0, nil
}
