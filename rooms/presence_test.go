package rooms_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// joinedOf returns the joined message among a joiner's first frames.
func joinedOf(t *testing.T, m *fakeMember) *codec.Joined {
	t.Helper()
	j := only[*codec.Joined](m.takeFrames())
	if len(j) != 1 {
		t.Fatalf("%s got %d joined", m.name, len(j))
	}
	return j[0]
}

// checkDrives checks that d's pose moves its avatar and that then, while d
// sends, the others' do not.
func checkDrives(t *testing.T, what string, d *rooms.Membership, others ...*rooms.Membership) {
	t.Helper()
	if _, err := d.UpdatePose(pose(1, float64(time.Now().UnixMilli()%1000), 1, 1)); err != nil {
		t.Errorf("%s: the driver's pose = %v", what, err)
	}
	for i, o := range others {
		if _, err := o.UpdatePose(pose(uint32(i), 9, 9, 9)); !errors.Is(err, rooms.ErrNotDriver) {
			t.Errorf("%s: another device's pose = %v, want ErrNotDriver", what, err)
		}
	}
}

func TestAUserOnTwoDevices(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		laptop, quest := newMember(t, "laptop"), newMember(t, "quest")
		d1 := w.joinDevice("lobby", "alice", "laptop", laptop)
		ref1 := joinedOf(t, laptop).PresenceRef
		w.ticks(1)
		bob.clear()

		d2 := w.joinDevice("lobby", "alice", "quest", quest)
		frames := quest.takeFrames()
		j := only[*codec.Joined](frames)[0]
		ref2 := j.PresenceRef
		if j.Slot != d1.Slot() || d2.Slot() != d1.Slot() || j.Resumed {
			t.Errorf("second device joined %+v, want slot %d, not resumed", j, d1.Slot())
		}
		state := only[*codec.PresenceState](frames)[0]
		if got := metaRefs(state.State, "alice"); !slices.Equal(got, []string{ref1, ref2}) {
			t.Errorf("presence_state has alice's metas %v, want %v", got, []string{ref1, ref2})
		}
		if len(state.State) != 2 {
			t.Errorf("presence_state keys %v, want alice and bob", asJSON(t, state.State))
		}
		checkDrives(t, "the device that sends, not the newer one", d1, d2)

		w.ticks(1)
		got := bob.takeFrames()
		if diffs := only[*codec.PresenceDiff](got); len(diffs) != 1 || !slices.Equal(metaRefs(diffs[0].Joins, "alice"), []string{ref2}) || len(diffs[0].Leaves) != 0 {
			t.Errorf("bob got presence diffs %v, want the join of alice's quest", asJSON(t, diffs))
		}
		if n := len(only[*codec.EntitiesDiff](got)) + len(only[*codec.Event](got)); n != 0 {
			t.Errorf("a second device made %v", asJSON(t, got))
		}

		// The newer device leaves: the user stays, the older device drives on.
		d2.Leave()
		checkDrives(t, "the older device after the newer left", d1, d2)
		w.ticks(1)
		got = bob.takeFrames()
		if diffs := only[*codec.PresenceDiff](got); len(diffs) != 1 || !slices.Equal(metaRefs(diffs[0].Leaves, "alice"), []string{ref2}) || len(diffs[0].Joins) != 0 {
			t.Errorf("bob got presence diffs %v, want the leave of alice's quest", asJSON(t, diffs))
		}
		if n := len(only[*codec.EntitiesDiff](got)) + len(only[*codec.Event](got)); n != 0 {
			t.Errorf("leaving one of two devices made %v", asJSON(t, got))
		}

		// The last device leaves: the user leaves.
		d1.Leave()
		if got := bob.takeFrames(); len(got) != 0 {
			t.Errorf("bob got %v before the tick", asJSON(t, got))
		}
		w.ticks(1)
		got = bob.takeFrames()
		if names := eventNames(got); !slices.Equal(names, []string{codec.EventUserLeft}) {
			t.Errorf("bob got events %v with the tick, want user_left", names)
		}
		if diffs := only[*codec.PresenceDiff](got); len(diffs) != 1 || !slices.Equal(metaRefs(diffs[0].Leaves, "alice"), []string{ref1}) {
			t.Errorf("bob got presence diffs %v, want the leave of alice's laptop", asJSON(t, diffs))
		}
		if diffs := only[*codec.EntitiesDiff](got); len(diffs) != 1 || !slices.Equal(diffs[0].Deletes, []string{"alice"}) || len(diffs[0].Creates)+len(diffs[0].Updates) != 0 {
			t.Errorf("bob got entities diffs %v, want alice's avatar deleted", asJSON(t, diffs))
		}
		if s := w.reg.Room("lobby").Stats(); s.Users != 1 || s.Devices != 1 {
			t.Errorf("stats %+v, want bob alone", s)
		}
	})
}

func TestTheDeviceWhosePosesAreNewestDrives(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		laptop := w.joinDevice("lobby", "alice", "laptop", newMember(t, "laptop"))
		quest := w.joinDevice("lobby", "alice", "quest", newMember(t, "quest"))
		phone := w.joinDevice("lobby", "alice", "phone", newMember(t, "phone"))
		checkDrives(t, "the first to send", quest, laptop, phone)
		for range 2 * int(cfg.StaleAfter/cfg.Tick) {
			w.ticks(1)
			checkDrives(t, "while it sends, the silent ones do not take over", quest, laptop, phone)
		}
		time.Sleep(cfg.StaleAfter)
		checkDrives(t, "another, once the driver stopped", phone, laptop, quest)

		// A dropped driver keeps the avatar while no other device sends;
		// the next to send takes over.
		time.Sleep(cfg.StaleAfter)
		phone.Disconnect(time.Now())
		checkDrives(t, "after the driver dropped", quest, laptop, phone)
		quest.Leave()
		checkDrives(t, "after the driver left", laptop, quest, phone)

		// The phone's reconnect is the same device, and the laptop drives on.
		again := newMember(t, "phone again")
		phone2 := w.joinDevice("lobby", "alice", "phone", again)
		if j := joinedOf(t, again); !j.Resumed {
			t.Errorf("reconnect of the phone was not resumed")
		}
		checkDrives(t, "after the reconnect", laptop, phone2, quest, phone)
		tablet := w.joinDevice("lobby", "alice", "tablet", newMember(t, "tablet"))
		checkDrives(t, "with a new device", laptop, tablet, phone2)
		time.Sleep(cfg.StaleAfter)
		laptop.Leave()
		checkDrives(t, "after the driver left, no other sending", tablet, laptop, phone2)
	})
}

// A device whose poses stopped stays stale when another device of its user
// joins, and when that device takes over: it does not look alive again,
// and the avatar recovers with the new device's first pose.
func TestADeadDeviceStaysStale(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		quest := w.joinDevice("lobby", "alice", "quest", newMember(t, "quest"))
		checkDrives(t, "the quest", quest)
		w.ticks(int(cfg.StaleAfter/cfg.Tick) + 1)
		questMeta := func(entries map[string]codec.PresenceEntry) []codec.PresenceMeta {
			var out []codec.PresenceMeta
			for _, m := range entries["alice"].Metas {
				if m.Device == "quest" {
					out = append(out, m)
				}
			}
			return out
		}
		got := bob.takeFrames()
		var stale bool
		for _, d := range only[*codec.PresenceDiff](got) {
			for _, m := range questMeta(d.Joins) {
				stale = m.Stale
			}
		}
		if !stale || !slices.Contains(eventNames(got), codec.EventUserStale) {
			t.Fatalf("the quest did not go stale: %v", asJSON(t, got))
		}

		laptopMember := newMember(t, "laptop")
		laptop := w.joinDevice("lobby", "alice", "laptop", laptopMember)
		w.ticks(1)
		checkDrives(t, "the laptop, which sends", laptop)
		w.ticks(2)
		got = bob.takeFrames()
		for _, d := range only[*codec.PresenceDiff](got) {
			for _, m := range questMeta(d.Joins) {
				t.Errorf("the quest's meta changed to %v", asJSON(t, m))
			}
		}
		if names := eventNames(got); !slices.Equal(names, []string{codec.EventUserRecovered}) {
			t.Errorf("bob got events %v, want user_recovered once the laptop sent", names)
		}
		state := only[*codec.PresenceState](laptopMember.takeFrames())[0]
		if m := questMeta(state.State); len(m) != 1 || !m[0].Stale {
			t.Errorf("the laptop's presence_state shows the quest as %v", asJSON(t, m))
		}
	})
}

// A device that joins again on a new session while its old session is
// still open (the client lost its connection before the server noticed)
// takes the old one's place: resumed, the old session closed with a
// goodbye, one meta, and no user_left.
func TestADeviceBackBeforeItsDropIsNoticedResumes(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		old := newMember(t, "quest")
		mq := w.joinDevice("lobby", "alice", "quest", old)
		ref := joinedOf(t, old).PresenceRef
		checkDrives(t, "the quest", mq)
		w.ticks(1)
		bob.clear()

		again := newMember(t, "quest again")
		mq2 := w.joinDevice("lobby", "alice", "quest", again)
		j := joinedOf(t, again)
		if !j.Resumed || j.Slot != mq.Slot() {
			t.Errorf("the quest's new session joined %+v, want resumed in slot %d", j, mq.Slot())
		}
		if g := only[*codec.Goodbye](old.takeFrames()); len(g) != 1 || g[0].Code != codec.CodeReplaced {
			t.Errorf("the old session got goodbyes %v, want one replaced", asJSON(t, g))
		}
		checkDrives(t, "the new session", mq2, mq)
		w.ticks(1)
		got := bob.takeFrames()
		if names := eventNames(got); len(names) != 0 {
			t.Errorf("bob got events %v, want none", names)
		}
		diffs := only[*codec.PresenceDiff](got)
		if len(diffs) != 1 || !slices.Equal(metaRefs(diffs[0].Leaves, "alice"), []string{ref}) || !slices.Equal(metaRefs(diffs[0].Joins, "alice"), []string{j.PresenceRef}) {
			t.Errorf("bob got presence diffs %v, want the quest's meta replaced", asJSON(t, diffs))
		}
		mq.Disconnect(time.Now()) // the old session ends: nothing changes
		w.ticks(1)
		if got := bob.takeFrames(); len(got) != 0 {
			t.Errorf("the old session's end made %v", asJSON(t, got))
		}
		if s := w.reg.Room("lobby").Stats(); s.Devices != 2 {
			t.Errorf("stats %+v, want bob's device and alice's quest", s)
		}
	})
}

func TestADroppedUserStaysForTheReconnectGrace(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		alice := newMember(t, "alice")
		ma := w.join("lobby", "alice", alice)
		ref := joinedOf(t, alice).PresenceRef
		w.ticks(1)
		bob.clear()
		alice.clear()

		ma.Disconnect(time.Now())
		grace := int(w.cfg.ReconnectGrace / w.cfg.Tick)
		w.ticks(grace - 1)
		if got := bob.takeFrames(); len(got) != 0 {
			t.Fatalf("within the grace bob got %v", asJSON(t, got))
		}
		if s := w.reg.Room("lobby").Stats(); s.Users != 2 {
			t.Fatalf("within the grace %d users, want 2", s.Users)
		}
		if frames, dgs := alice.take(); len(frames)+len(dgs) != 0 {
			t.Errorf("the dropped session got %d frames, %d datagrams", len(frames), len(dgs))
		}

		w.ticks(1)
		got := bob.takeFrames()
		if names := eventNames(got); !slices.Equal(names, []string{codec.EventUserLeft}) {
			t.Errorf("at the grace's end bob got events %v, want user_left", names)
		}
		if diffs := only[*codec.PresenceDiff](got); len(diffs) != 1 || !slices.Equal(metaRefs(diffs[0].Leaves, "alice"), []string{ref}) {
			t.Errorf("bob got presence diffs %v, want alice's leave", asJSON(t, diffs))
		}
		if diffs := only[*codec.EntitiesDiff](got); len(diffs) != 1 || !slices.Equal(diffs[0].Deletes, []string{"alice"}) {
			t.Errorf("bob got entities diffs %v, want alice's avatar deleted", asJSON(t, diffs))
		}
	})
}

func TestARejoinWithinTheGraceTakesOver(t *testing.T) {
	tests := []struct {
		name   string
		device string
	}{
		{"a rejoin from the same device takes over its presence", "quest"},
		{"a rejoin without a device name takes over the dropped device", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				bob := newMember(t, "bob")
				w.join("lobby", "bob", bob)
				alice := newMember(t, "alice")
				ma := w.joinDevice("lobby", "alice", tt.device, alice)
				first := joinedOf(t, alice)
				w.ticks(1)
				bob.clear()

				ma.Disconnect(time.Now())
				w.ticks(int(w.cfg.ReconnectGrace/w.cfg.Tick) / 2)
				again := newMember(t, "alice again")
				ma2 := w.joinDevice("lobby", "alice", tt.device, again)
				j := joinedOf(t, again)
				if !j.Resumed || j.Slot != first.Slot || ma2.Slot() != ma.Slot() || j.PresenceRef == first.PresenceRef {
					t.Errorf("rejoin %+v, want resumed in slot %d with a new ref", j, first.Slot)
				}
				checkDrives(t, "the rejoined device", ma2, ma)
				if err := ma.Publish("wave", nil); !errors.Is(err, rooms.ErrLeft) {
					t.Errorf("the dropped membership's Publish = %v, want ErrLeft", err)
				}
				// The old session's late calls change nothing.
				ma.Disconnect(time.Now())
				ma.Leave()
				checkDrives(t, "the rejoined device after the old one's late calls", ma2, ma)

				w.ticks(1)
				got := bob.takeFrames()
				if names := eventNames(got); len(names) != 0 {
					t.Errorf("a resumed user made events %v", names)
				}
				if n := len(only[*codec.EntitiesDiff](got)); n != 0 {
					t.Errorf("a resumed user made %d entities diffs", n)
				}
				diffs := only[*codec.PresenceDiff](got)
				if len(diffs) != 1 {
					t.Fatalf("bob got %d presence diffs, want 1", len(diffs))
				}
				if !slices.Equal(metaRefs(diffs[0].Leaves, "alice"), []string{first.PresenceRef}) || !slices.Equal(metaRefs(diffs[0].Joins, "alice"), []string{j.PresenceRef}) {
					t.Errorf("presence diff %v, want leave of %s and join of %s", asJSON(t, diffs[0]), first.PresenceRef, j.PresenceRef)
				}
				if prev := diffs[0].Joins["alice"].Metas[0].PrevRef; prev != first.PresenceRef {
					t.Errorf("the new meta's phx_ref_prev is %q, want %q", prev, first.PresenceRef)
				}

				// The old grace ends without a leave.
				w.ticks(int(w.cfg.ReconnectGrace/w.cfg.Tick) + 1)
				if got := bob.takeFrames(); len(got) != 0 {
					t.Errorf("after the old grace bob got %v", asJSON(t, got))
				}
				if s := w.reg.Room("lobby").Stats(); s.Users != 2 || s.Devices != 2 {
					t.Errorf("stats %+v, want 2 users on 2 devices", s)
				}
			})
		})
	}
}

func TestADisconnectPastTheGraceLeavesAtOnce(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		w.ticks(1)
		bob.clear()

		ma.Disconnect(time.Now().Add(-w.cfg.ReconnectGrace))
		if s := w.reg.Room("lobby").Stats(); s.Users != 1 {
			t.Errorf("%d users after the disconnect, want 1", s.Users)
		}
		w.ticks(1)
		got := bob.takeFrames()
		if names := eventNames(got); !slices.Equal(names, []string{codec.EventUserLeft}) {
			t.Errorf("bob got events %v with the tick, want user_left", names)
		}
		if d := only[*codec.EntitiesDiff](got); len(d) != 1 || !slices.Equal(d[0].Deletes, []string{"alice"}) {
			t.Errorf("bob got entities diffs %v, want alice's avatar deleted", asJSON(t, d))
		}
		if d := only[*codec.PresenceDiff](got); len(d) != 1 || len(d[0].Leaves["alice"].Metas) != 1 {
			t.Errorf("bob got presence diffs %v, want alice's leave", asJSON(t, d))
		}

		// Coming back later is a new join.
		again := newMember(t, "alice again")
		w.join("lobby", "alice", again)
		if joinedOf(t, again).Resumed {
			t.Errorf("a join after leaving was resumed")
		}
		w.ticks(1)
		if names := eventNames(bob.takeFrames()); !slices.Equal(names, []string{codec.EventUserJoined}) {
			t.Errorf("bob got events %v, want user_joined", names)
		}
	})
}

func TestAnAvatarWhosePosesStopGoesStale(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		bob, alice := newMember(t, "bob"), newMember(t, "alice")
		mb := w.join("lobby", "bob", bob)
		ma := w.join("lobby", "alice", alice)
		ref := joinedOf(t, alice).PresenceRef
		staleTicks := int(w.cfg.StaleAfter / w.cfg.Tick)

		// bob keeps sending; alice sent once, at the join.
		var staleDiff *codec.PresenceDiff
		var staleAt int
		var events []*codec.Event
		for tick := 1; tick <= staleTicks+2 && staleDiff == nil; tick++ {
			bob.clear()
			if _, err := mb.UpdatePose(pose(uint32(tick), 0, 2, 0)); err != nil {
				t.Fatal(err)
			}
			w.ticks(1)
			got := bob.takeFrames()
			for _, d := range only[*codec.PresenceDiff](got) {
				if len(d.Joins["alice"].Metas) > 0 && tick > 1 {
					staleDiff, staleAt = d, tick
				}
			}
			events = only[*codec.Event](got)
		}
		if staleDiff == nil || staleAt != staleTicks {
			t.Fatalf("alice went stale at tick %d, want %d", staleAt, staleTicks)
		}
		joins, leaves := staleDiff.Joins["alice"].Metas, staleDiff.Leaves["alice"].Metas
		if len(joins) != 1 || len(leaves) != 1 || leaves[0].Ref != ref || joins[0].PrevRef != ref || joins[0].Ref == ref || !joins[0].Stale || leaves[0].Stale {
			t.Errorf("stale presence diff %v, want a leave of %s and a stale join with phx_ref_prev %s", asJSON(t, staleDiff), ref, ref)
		}
		if len(staleDiff.Joins) != 1 {
			t.Errorf("bob went stale too: %v", asJSON(t, staleDiff))
		}
		if len(events) != 1 || events[0].Name != codec.EventUserStale || events[0].User != "alice" {
			t.Errorf("events %v, want user_stale by alice", asJSON(t, events))
		}

		// Nothing more while she stays quiet.
		mb.UpdatePose(pose(100, 0, 2, 0))
		w.ticks(1)
		if got := bob.takeFrames(); len(got) != 0 {
			t.Errorf("a stale user made %v", asJSON(t, got))
		}

		// The next pose recovers her, the same place or not.
		staleRef := joins[0].Ref
		if _, err := ma.UpdatePose(pose(101, 0, 0, 0)); err != nil {
			t.Fatal(err)
		}
		mb.UpdatePose(pose(101, 0, 2, 0))
		w.ticks(1)
		got := bob.takeFrames()
		diffs := only[*codec.PresenceDiff](got)
		if len(diffs) != 1 {
			t.Fatalf("bob got %d presence diffs at recovery, want 1", len(diffs))
		}
		joins, leaves = diffs[0].Joins["alice"].Metas, diffs[0].Leaves["alice"].Metas
		if len(joins) != 1 || len(leaves) != 1 || leaves[0].Ref != staleRef || joins[0].PrevRef != staleRef || joins[0].Stale {
			t.Errorf("recovery presence diff %v, want a leave of %s and a fresh join", asJSON(t, diffs[0]), staleRef)
		}
		if names := eventNames(got); !slices.Equal(names, []string{codec.EventUserRecovered}) {
			t.Errorf("events %v, want user_recovered", names)
		}

		// A joiner now sees her fresh meta.
		carol := newMember(t, "carol")
		w.join("lobby", "carol", carol)
		state := only[*codec.PresenceState](carol.takeFrames())[0]
		if m := state.State["alice"].Metas; len(m) != 1 || m[0].Stale || m[0].Ref != joins[0].Ref {
			t.Errorf("carol sees alice as %v", asJSON(t, m))
		}
	})
}

// An avatar is marked stale at the first tick at least StaleAfter after its
// last pose: never sooner, and less than a tick later, wherever between
// two ticks the pose came.
func TestStaleIsMarkedWithinATickAfterStaleAfter(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	for _, offset := range []time.Duration{0, time.Millisecond, 100 * time.Millisecond, 199 * time.Millisecond} {
		inBubble(t, cfg, nil, func(t *testing.T, w *world) {
			bob := newMember(t, "bob")
			w.join("lobby", "bob", bob)
			ma := w.join("lobby", "alice", newMember(t, "alice"))
			w.ticks(1)
			time.Sleep(offset)
			if _, err := ma.UpdatePose(pose(1, 1, 1, 1)); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			bob.clear()
			aliceStale := func() bool {
				for _, e := range only[*codec.Event](bob.takeFrames()) {
					if e.Name == codec.EventUserStale && e.User == "alice" {
						return true
					}
				}
				return false
			}
			for !aliceStale() {
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if time.Since(sent) > 2*cfg.StaleAfter {
					t.Fatalf("pose %v after a tick: not stale after %v", offset, time.Since(sent))
				}
			}
			if took := time.Since(sent); took < cfg.StaleAfter || took >= cfg.StaleAfter+cfg.Tick {
				t.Errorf("pose %v after a tick: stale after %v, want from %v to less than %v", offset, took, cfg.StaleAfter, cfg.StaleAfter+cfg.Tick)
			}
		})
	}
}

// A burst of joins reaches the others with the tick, in one go after the
// presence diff; each joiner hears of itself at once.
func TestABurstOfJoinsIsAnnouncedWithTheTick(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		w.ticks(1)
		bob.clear()
		for i := range 10 {
			m := newMember(t, fmt.Sprintf("m%d", i))
			w.join("lobby", fmt.Sprintf("u%d", i), m)
			if names := eventNames(m.takeFrames()); !slices.Equal(names, []string{codec.EventUserJoined}) {
				t.Errorf("joiner %d got events %v at once, want its own user_joined", i, names)
			}
		}
		if got := bob.takeFrames(); len(got) != 0 {
			t.Errorf("bob got %d messages before the tick", len(got))
		}
		w.ticks(1)
		got := bob.takeFrames()
		if names := eventNames(got); len(names) != 10 {
			t.Errorf("bob got events %v with the tick, want 10 user_joined", names)
		}
		if ts := types(got); len(ts) < 3 || ts[0] != "*codec.EntitiesDiff" || ts[1] != "*codec.PresenceDiff" || ts[2] != "*codec.Event" {
			t.Errorf("bob got %v, want the diffs, then the events", ts)
		}
	})
}
