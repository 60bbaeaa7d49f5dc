package client

import (
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
)

func newOfflineClient() *Client {
	return &Client{
		changed:     make(chan struct{}),
		waiters:     make(map[uint32]chan codec.Message),
		slots:       make(map[uint16]string),
		avatarSlots: make(map[string]uint16),
		seqs:        make(map[uint32]*partSet),
		repeat:      3,
	}
}

func update(seq uint32, recs ...[]byte) codec.PoseUpdate {
	var b []byte
	for _, r := range recs {
		b = append(b, r...)
	}
	return codec.PoseUpdate{Seq: seq, Part: 0, Parts: 1, Records: b}
}

// headAt returns a head pose at x on the x axis, stamped with t.
func headAt(t uint32, x float64) *codec.Pose {
	return &codec.Pose{Time: t, Head: codec.Transform{Position: [3]float64{x, 0, 0}, Rotation: codec.Identity.Rotation}}
}

func slotRec(slot uint16, p *codec.Pose) []byte {
	return codec.AppendSlotRecord(nil, slot, codec.AppendPose(nil, p))
}

// An entities_state that arrives after newer pose updates must not replace
// the newer poses with its older ones or move Seq back: if other avatars
// kept the updates coming, no resync would be asked for and the client would
// show an avatar that stopped moving at its old place for good.
func TestALateEntitiesStateKeepsNewerPoses(t *testing.T) {
	c := newOfflineClient()
	avatar := func(slot int, x float64, tm uint32) codec.Components {
		return codec.Components{"avatar": true, "slot": int64(slot), "position": []any{x, 0.0, 0.0}, "pose_time": int64(tm)}
	}
	c.apply(&codec.Joined{Room: "r", User: "me"})
	now := time.Now()
	// The server builds a state at seq 20 (b at x=0); b then moves to x=5 at
	// seq 21 and stops: seqs 21..24 carry it. They arrive before the state.
	c.apply(&codec.EntitiesState{Seq: 10, Entities: map[string]codec.Components{"b": avatar(1, 0, 100), "c": avatar(2, 0, 100)}})
	for s := uint32(11); s <= 20; s++ {
		c.applyPoses(update(s, slotRec(2, headAt(100+s, 1))), now)
	}
	for s := uint32(21); s <= 24; s++ {
		c.applyPoses(update(s, slotRec(1, headAt(300, 5)), slotRec(2, headAt(100+s, 1))), now)
	}
	t.Logf("before the late state: b at %v, seq %d", c.view.Poses["b"].Head.Position, c.view.Seq)
	c.apply(&codec.EntitiesState{Seq: 20, Entities: map[string]codec.Components{"b": avatar(1, 0, 200), "c": avatar(2, 1, 120)}})
	resync := false
	for s := uint32(25); s <= 30; s++ { // c keeps moving; b is still
		resync = c.applyPoses(update(s, slotRec(2, headAt(100+s, 1))), now) || resync
	}
	got := c.view.Poses["b"].Head.Position
	t.Logf("after: b at %v, seq %d, resync asked: %v", got, c.view.Seq, resync)
	if got[0] != 5 && !resync {
		t.Errorf("b shown at x=%v for good (true x=5) and no resync asked", got[0])
	}
}

// Every type the table says the server sends is one the client applies:
// a type added to the table and not to the client fails here.
func TestTheClientAppliesEveryTypeTheServerSends(t *testing.T) {
	for typ, from := range codec.Types() {
		if from&codec.FromServer == 0 {
			continue
		}
		c := newOfflineClient()
		if _, known := c.apply(codec.New(typ)); !known {
			t.Errorf("%s: not applied", typ)
		}
	}
	if _, known := newOfflineClient().apply(codec.New(codec.TypeJoin)); known {
		t.Error("a join, which only a client sends, was applied")
	}
}
