package rooms_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// settle lets the poses of joins stop repeating and forgets what members got.
func (w *world) settle(members ...*fakeMember) {
	w.ticks(w.cfg.RepeatTicks + 2)
	for _, m := range members {
		m.clear()
	}
}

func TestAPoseIsSentOnceEncodedToEveryMember(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice, bob, carol := newMember(t, "alice"), newMember(t, "bob"), newMember(t, "carol")
		ma := w.join("lobby", "alice", alice)
		w.join("lobby", "bob", bob)
		w.join("lobby", "carol", carol)
		w.settle(alice, bob, carol)

		rec := pose(1000, 1.5, 1.7, -2.25)
		moved, err := ma.UpdatePose(rec)
		if err != nil || !moved {
			t.Fatalf("UpdatePose = %v, %v; want moved", moved, err)
		}
		w.ticks(1)
		var first [][]byte
		for _, m := range []*fakeMember{alice, bob, carol} {
			dgs := m.takeDatagrams()
			if len(dgs) != 1 {
				t.Fatalf("%s got %d datagrams, want 1", m.name, len(dgs))
			}
			d := dgs[0]
			if d.Part != 0 || d.Parts != 1 || len(d.records) != 1 {
				t.Fatalf("%s got part %d/%d with %d records, want one record in 0/1", m.name, d.Part, d.Parts, len(d.records))
			}
			if d.records[0].slot != ma.Slot() || !bytes.Equal(d.records[0].rec, rec) {
				t.Errorf("%s got slot %d record %x, want slot %d record %x", m.name, d.records[0].slot, d.records[0].rec, ma.Slot(), rec)
			}
			if first == nil {
				first = d.runs
				continue
			}
			if len(d.runs) != len(first) || &d.runs[0][0] != &first[0][0] {
				t.Errorf("%s got a datagram of its own, not the room's one encoding", m.name)
			}
		}
	})
}

func TestAStillAvatarIsRepeatedThenNotSent(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice, bob := newMember(t, "alice"), newMember(t, "bob")
		ma := w.join("lobby", "alice", alice)
		w.join("lobby", "bob", bob)
		w.settle(alice, bob)

		rec := pose(1, 3, 1.6, 3)
		if _, err := ma.UpdatePose(rec); err != nil {
			t.Fatal(err)
		}
		var seqs []uint32
		for tick := 1; tick <= 1+w.cfg.RepeatTicks; tick++ {
			w.ticks(1)
			dgs := bob.takeDatagrams()
			if len(dgs) != 1 || len(dgs[0].records) != 1 || !bytes.Equal(dgs[0].records[0].rec, rec) {
				t.Fatalf("tick %d after the move: %d datagrams, want the pose", tick, len(dgs))
			}
			seqs = append(seqs, dgs[0].Seq)
			// The same place at a later time is no move.
			moved, err := ma.UpdatePose(pose(uint32(1+tick), 3, 1.6, 3))
			if err != nil || moved {
				t.Fatalf("UpdatePose of the same place = %v, %v; want not moved", moved, err)
			}
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Errorf("seqs %v, want consecutive", seqs)
			}
		}
		w.ticks(1)
		if dgs := bob.takeDatagrams(); len(dgs) != 0 {
			t.Errorf("%d datagrams after %d repeats, want none", len(dgs), w.cfg.RepeatTicks)
		}
	})
}

func TestAnIdleRoomSendsHeartbeats(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice, bob := newMember(t, "alice"), newMember(t, "bob")
		ma := w.join("lobby", "alice", alice)
		w.join("lobby", "bob", bob)
		w.settle(alice, bob)

		if _, err := ma.UpdatePose(pose(1, 0, 2, 0)); err != nil {
			t.Fatal(err)
		}
		heartbeat := int(w.cfg.Heartbeat / w.cfg.Tick)
		var lastSeq uint32
		var got []string
		for tick := 1; tick <= 1+w.cfg.RepeatTicks+3*heartbeat; tick++ {
			w.ticks(1)
			for _, d := range bob.takeDatagrams() {
				if d.Parts == 0 {
					got = append(got, fmt.Sprintf("tick %d: heartbeat %d", tick, d.Seq))
					if len(d.records) != 0 {
						t.Errorf("heartbeat with %d records", len(d.records))
					}
				} else {
					lastSeq = d.Seq
				}
			}
		}
		last := 1 + w.cfg.RepeatTicks // the last tick that carried the pose
		want := []string{
			fmt.Sprintf("tick %d: heartbeat %d", last+heartbeat, lastSeq),
			fmt.Sprintf("tick %d: heartbeat %d", last+2*heartbeat, lastSeq),
			fmt.Sprintf("tick %d: heartbeat %d", last+3*heartbeat, lastSeq),
		}
		if !slices.Equal(got, want) {
			t.Errorf("got\n%v\nwant\n%v", got, want)
		}
	})
}

func TestUpdatePoseRefusals(t *testing.T) {
	good := pose(1, 1, 1, 1)
	tests := []struct {
		name    string
		rec     func(good []byte) []byte
		device  int // 0: the device that sends and drives, 1: the other
		leave   bool
		wantErr error
	}{
		{"a pose from a device that does not drive is ignored", func(b []byte) []byte { return b }, 1, false, rooms.ErrNotDriver},
		{"a pose after leaving is ignored", func(b []byte) []byte { return b }, 0, true, rooms.ErrNotDriver},
		{"an empty record is malformed", func([]byte) []byte { return nil }, 0, false, codec.ErrMalformed},
		{"a truncated record is malformed", func(b []byte) []byte { return b[:len(b)-1] }, 0, false, codec.ErrMalformed},
		{"a record with a trailing byte is malformed", func(b []byte) []byte { return append(slices.Clone(b), 0) }, 0, false, codec.ErrMalformed},
		{"a record with unknown flags is malformed", func(b []byte) []byte { c := slices.Clone(b); c[0] = 0x80; return c }, 0, false, codec.ErrMalformed},
		{"a record whose hand flags want more bytes is malformed", func(b []byte) []byte { c := slices.Clone(b); c[0] = codec.FlagLeftHand; return c }, 0, false, codec.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				bob := newMember(t, "bob")
				w.join("lobby", "bob", bob)
				devices := []*rooms.Membership{
					w.joinDevice("lobby", "alice", "laptop", newMember(t, "alice-laptop")),
					w.joinDevice("lobby", "alice", "quest", newMember(t, "alice-quest")),
				}
				if _, err := devices[0].UpdatePose(pose(0, 0, 0, 0)); err != nil {
					t.Fatal(err)
				}
				if tt.leave {
					devices[0].Leave()
					devices[1].Leave()
				}
				w.settle(bob)
				moved, err := devices[tt.device].UpdatePose(tt.rec(good))
				if moved || !errors.Is(err, tt.wantErr) {
					t.Errorf("UpdatePose = %v, %v; want %v", moved, err, tt.wantErr)
				}
				w.ticks(1)
				if dgs := bob.takeDatagrams(); len(dgs) != 0 {
					t.Errorf("a refused pose was sent: %d datagrams", len(dgs))
				}
			})
		})
	}
}

func TestPosesAreSplitByEachMembersDatagramLimit(t *testing.T) {
	const users = 70 // 70 poses with hands: 3 datagrams of 1200 bytes, 4 of 1000
	limits := []struct {
		max, limit, wantParts int
	}{
		{1500, codec.MaxDatagramSize, 3}, // more than the server sends
		{codec.MaxDatagramSize, codec.MaxDatagramSize, 3},
		{1000, 1000, 4},
		{500, codec.MinDatagramSize, 4}, // under the minimum: taken as the minimum
	}
	cfg := testConfig()
	cfg.Interest.Disabled = true
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		members := make([]*fakeMember, users)
		ms := make([]*rooms.Membership, users)
		for i := range members {
			members[i] = newMember(t, fmt.Sprintf("m%d", i))
			members[i].setMaxDatagram(limits[i%len(limits)].max)
			ms[i] = w.join("lobby", fmt.Sprintf("u%d", i), members[i])
		}
		w.settle(members...)
		for n := range 2 {
			want := make(map[int][]byte)
			for i, m := range ms {
				rec := handsPose(uint32(n), float64(i)/10, 1.6, -float64(n+i)/10)
				if _, err := m.UpdatePose(rec); err != nil {
					t.Fatal(err)
				}
				want[m.Slot()] = rec
			}
			w.ticks(1)
			reference := make(map[int][]datagram) // by limit
			for i, m := range members {
				l := limits[i%len(limits)]
				if i == 0 && n == 1 {
					l = limits[2] // its limit shrank
				}
				dgs := m.takeDatagrams()
				checkParts(t, m.name, dgs, l.wantParts, l.limit, want)
				ref, ok := reference[l.limit]
				if !ok {
					reference[l.limit] = dgs
					continue
				}
				for i := range dgs {
					if &dgs[i].runs[0][0] != &ref[i].runs[0][0] {
						t.Fatalf("%s got datagram %d encoded for itself", m.name, i)
					}
				}
			}
			// A member whose limit shrinks gets smaller datagrams from the next tick.
			members[0].setMaxDatagram(1000)
		}
	})
}

// checkParts checks that dgs are one tick's pose update in parts of at most
// limit bytes, numbered 0..parts-1, that together carry exactly want.
func checkParts(t *testing.T, name string, dgs []datagram, wantParts, limit int, want map[int][]byte) {
	t.Helper()
	if len(dgs) != wantParts {
		t.Fatalf("%s got %d datagrams, want %d", name, len(dgs), wantParts)
	}
	got := make(map[int][]byte)
	for i, d := range dgs {
		if len(d.raw) > limit {
			t.Errorf("%s: datagram %d is %d bytes, limit %d", name, i, len(d.raw), limit)
		}
		if d.Seq != dgs[0].Seq || int(d.Parts) != wantParts || int(d.Part) != i {
			t.Errorf("%s: datagram %d is part %d/%d of seq %d, want %d/%d of %d", name, i, d.Part, d.Parts, d.Seq, i, wantParts, dgs[0].Seq)
		}
		for _, r := range d.records {
			if _, dup := got[r.slot]; dup {
				t.Errorf("%s: slot %d sent twice", name, r.slot)
			}
			got[r.slot] = r.rec
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s got %d records, want %d", name, len(got), len(want))
	}
	for slot, rec := range want {
		if !bytes.Equal(got[slot], rec) {
			t.Errorf("%s: slot %d carries %x, want %x", name, slot, got[slot], rec)
		}
	}
}
