package rooms

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"

	"github.com/posecast/posecast/codec"
)

// poseWords is how many 64-bit words hold the largest pose record.
const poseWords = (codec.MaxPoseSize + 7) / 8

// timeMask selects the bytes of a record's first word that hold the sender
// timestamp (bytes 1–4), which do not count as a move.
const timeMask = uint64(0xffffffff) << 8

// PoseTable is a fixed array of pose slots, one per avatar in a room. A slot
// is written by its avatar's session and read by the room's tick, with no
// mutex and no allocation. Each slot is a seqlock: its sequence word is odd
// while a write is in progress, and a reader that sees it change retries; a
// second writer spins until the first is done. So no one waits for longer
// than one write of 64 bytes, though the table is not lock-free in the
// strict sense.
// Every word is accessed atomically, so the table is clean under the race
// detector.
type PoseTable struct {
	slots []poseSlot // 64 bytes each: one cache line, written by one core
	// owners number, by slot, the avatars that have held it (Claim); a
	// write on behalf of an earlier one is refused (WriteAs). Read-mostly,
	// apart from the slots so that they stay a cache line each.
	owners []atomic.Uint64
}

type poseSlot struct {
	// seq is the seqlock; seq/2 is the number of changing writes so far.
	seq atomic.Uint64
	// words hold the pose record, little-endian, zero-padded.
	words [poseWords]atomic.Uint64
	_     [64 - 8 - poseWords*8]byte // to a cache line
}

// NewPoseTable returns a table of n slots.
func NewPoseTable(n int) *PoseTable {
	return &PoseTable{slots: make([]poseSlot, n), owners: make([]atomic.Uint64, n)}
}

// Len returns the number of slots.
func (t *PoseTable) Len() int { return len(t.slots) }

// Write stores a checked pose record (see codec.CheckPose) in slot i. A record that puts the avatar where it already
// is (codec.SamePlace) keeps the slot's version, so a still avatar stops
// being sent. It reports whether the pose changed.
//
// One session writes a slot; should two race (a user's devices swapping
// which one drives the avatar), the sequence word serializes them.
func (t *PoseTable) Write(i int, rec []byte) bool {
	changed, _ := t.write(i, 0, false, rec)
	return changed
}

// Claim gives slot i to a new avatar and returns its owner number. A write
// in progress for the avatar before finishes first; one after, on its
// behalf, is refused.
func (t *PoseTable) Claim(i int) uint64 {
	s := &t.slots[i]
	seq := s.lock()
	owner := t.owners[i].Add(1)
	s.seq.Store(seq)
	return owner
}

// WriteAs is Write on behalf of the slot's owner number owner (from Claim):
// when another avatar holds the slot now, it writes nothing and reports ok
// false, so that a late pose of an avatar that left never lands on the
// avatar that took its slot.
func (t *PoseTable) WriteAs(i int, owner uint64, rec []byte) (changed, ok bool) {
	return t.write(i, owner, true, rec)
}

// write is Write, and with checkOwner WriteAs.
func (t *PoseTable) write(i int, owner uint64, checkOwner bool, rec []byte) (changed, ok bool) {
	s := &t.slots[i]
	var w [poseWords]uint64
	var buf [poseWords * 8]byte
	copy(buf[:], rec)
	for k := range w {
		w[k] = binary.LittleEndian.Uint64(buf[k*8:])
	}
	seq := s.lock()
	if checkOwner && t.owners[i].Load() != owner {
		s.seq.Store(seq)
		return false, false
	}
	if seq != 0 && s.words[0].Load()&^timeMask == w[0]&^timeMask && s.sameTail(&w) {
		s.seq.Store(seq) // unchanged: release without a new version
		return false, true
	}
	for k := range w {
		s.words[k].Store(w[k])
	}
	s.seq.Store(seq + 2)
	return true, true
}

// lock takes the slot's write side and returns the even sequence it held.
func (s *poseSlot) lock() uint64 {
	for {
		seq := s.seq.Load()
		if seq&1 == 0 && s.seq.CompareAndSwap(seq, seq+1) {
			return seq
		}
		runtime.Gosched()
	}
}

func (s *poseSlot) sameTail(w *[poseWords]uint64) bool {
	for k := 1; k < poseWords; k++ {
		if s.words[k].Load() != w[k] {
			return false
		}
	}
	return true
}

// Read appends slot i's record to dst and returns it with the slot's
// version. A slot never written has version 0 and no record.
func (t *PoseTable) Read(i int, dst []byte) ([]byte, uint64) {
	s := &t.slots[i]
	var w [poseWords]uint64
	var seq uint64
	for {
		seq = s.seq.Load()
		if seq&1 != 0 {
			runtime.Gosched()
			continue
		}
		for k := range w {
			w[k] = s.words[k].Load()
		}
		if s.seq.Load() == seq {
			break
		}
	}
	if seq == 0 {
		return dst, 0
	}
	var buf [poseWords * 8]byte
	for k := range w {
		binary.LittleEndian.PutUint64(buf[k*8:], w[k])
	}
	n, err := codec.PoseRecordSize(buf[0])
	if err != nil {
		// Only checked records are written; this cannot happen.
		panic("rooms: pose table holds a bad record")
	}
	return append(dst, buf[:n]...), seq / 2
}

// Version returns how many changing writes slot i has had. A write in
// progress counts once it finishes.
func (t *PoseTable) Version(i int) uint64 {
	return t.slots[i].seq.Load() / 2
}
