package main

import (
	"testing"

	"github.com/posecast/posecast/codec"
)

func TestUpdateLogCountsTornAndSkipped(t *testing.T) {
	type part struct{ seq, part, parts int }
	whole := func(from, to int) []part { // updates from..to, each in two parts
		var ps []part
		for s := from; s <= to; s++ {
			ps = append(ps, part{s, 0, 2}, part{s, 1, 2})
		}
		return ps
	}
	tests := []struct {
		name                   string
		parts                  []part
		updates, torn, skipped uint64
	}{
		{"every part of every update", whole(7, 40), 34, 0, 0},
		{"an update missing a part is torn once settled",
			append([]part{{1, 0, 2}, {1, 1, 2}, {2, 1, 2}}, whole(3, 30)...), 30, 1, 0},
		{"a part repeated counts once", append([]part{{1, 0, 2}, {1, 0, 2}}, whole(2, 30)...), 30, 1, 0},
		{"updates never seen between the first and the last are skipped",
			append(whole(1, 2), whole(6, 30)...), 27, 0, 3},
		{"a late part within the window completes its update",
			append(append(whole(1, 4), part{5, 0, 2}), append(whole(6, 10), part{5, 1, 2})...), 10, 0, 0},
		{"a part after its update was settled is not counted",
			append(append([]part{{1, 0, 2}}, whole(2, 30)...), part{1, 1, 2}), 30, 1, 0},
		{"heartbeats number nothing", append(whole(1, 3), part{9, 0, 0}), 3, 0, 0},
		{"the seq wraps", whole(1<<32-3, 1<<32+4), 8, 0, 0},
		{"open updates at the end are not torn", append(whole(1, 3), part{4, 0, 2}), 4, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l updateLog
			for _, p := range tt.parts {
				l.add(codec.PoseUpdate{Seq: uint32(p.seq), Part: uint8(p.part), Parts: uint8(p.parts)})
			}
			l.end()
			if l.updates != tt.updates || l.torn != tt.torn || l.skipped != tt.skipped {
				t.Errorf("updates %d, torn %d, skipped %d; want %d, %d, %d", l.updates, l.torn, l.skipped, tt.updates, tt.torn, tt.skipped)
			}
		})
	}
	// A new session numbers its updates anew; the totals add up.
	var l updateLog
	for _, ps := range [][]part{whole(100, 120), whole(1, 10)} {
		for _, p := range ps {
			l.add(codec.PoseUpdate{Seq: uint32(p.seq), Part: uint8(p.part), Parts: uint8(p.parts)})
		}
		l.end()
	}
	if l.updates != 31 || l.torn != 0 || l.skipped != 0 {
		t.Errorf("two sessions: updates %d, torn %d, skipped %d; want 31, 0, 0", l.updates, l.torn, l.skipped)
	}
}
