package rooms_test

import (
	"errors"
	"math"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

func TestJoinSendsJoinedThenStateThenPresence(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice := newMember(t, "alice")
		w.join("lobby", "alice", alice)
		w.ticks(1)
		alice.clear()

		bob := newMember(t, "bob")
		mb := w.joinReq("lobby", bob, rooms.JoinRequest{Ref: 7, User: "bob", Name: "Bob", Device: "quest"})
		frames := bob.takeFrames()
		if len(frames) < 3 {
			t.Fatalf("joiner got %v, want joined, entities_state, presence_state first", types(frames))
		}
		joined, ok1 := frames[0].(*codec.Joined)
		state, ok2 := frames[1].(*codec.EntitiesState)
		presence, ok3 := frames[2].(*codec.PresenceState)
		if !ok1 || !ok2 || !ok3 {
			t.Fatalf("joiner got %v, want joined, entities_state, presence_state first", types(frames))
		}

		// joined
		if joined.Ref != 7 || joined.Room != "lobby" || joined.User != "bob" || joined.Entity != "bob" {
			t.Errorf("joined = %+v, want ref 7 for bob in lobby", joined)
		}
		if joined.Slot != mb.Slot() || mb.User() != "bob" || mb.Room() != "lobby" {
			t.Errorf("joined slot %d, membership %s/%s slot %d", joined.Slot, mb.Room(), mb.User(), mb.Slot())
		}
		if joined.PresenceRef == "" || joined.Resumed || joined.TickMillis != 200 {
			t.Errorf("joined = %+v, want a presence ref, not resumed, tick 200ms", joined)
		}

		// entities_state: one spawn point, obstacles, both avatars.
		var spawn []float64
		obstacles := 0
		for id, c := range state.Entities {
			if c[rooms.ComponentSpawnPoint] == true {
				if spawn != nil {
					t.Errorf("second spawn point %s", id)
				}
				p, ok := vec(c[rooms.ComponentPosition], 3)
				if !ok {
					t.Fatalf("spawn point position %v", c[rooms.ComponentPosition])
				}
				spawn = p
			}
			if _, ok := c[rooms.ComponentObstacle]; ok {
				obstacles++
			}
		}
		if spawn == nil {
			t.Fatalf("no spawn point in %v", state.Entities)
		}
		if spawn[0] < -10 || spawn[0] > 10 || spawn[1] != 0.1 || spawn[2] < -10 || spawn[2] > 10 {
			t.Errorf("spawn point at %v, want [-10..10, 0.1, -10..10]", spawn)
		}
		if obstacles < 3 {
			t.Errorf("%d obstacles, want at least 3", obstacles)
		}
		avatar := state.Entities["bob"]
		if avatar[rooms.ComponentAvatar] != true || avatar["user"] != "bob" || avatar["name"] != "Bob" {
			t.Errorf("bob's avatar = %v", avatar)
		}
		if slot, ok := num(avatar["slot"]); !ok || int(slot) != joined.Slot {
			t.Errorf("bob's avatar slot %v, want %d", avatar["slot"], joined.Slot)
		}
		if pos, ok := vec(avatar["position"], 3); !ok || !slices.Equal(pos, joined.Position[:]) {
			t.Errorf("bob's avatar at %v, joined says %v", avatar["position"], joined.Position)
		}
		if state.Entities["alice"][rooms.ComponentAvatar] != true {
			t.Errorf("alice's avatar missing from %v", state.Entities)
		}

		// The joiner stands near the spawn point, head 2 m up.
		const quantum = codec.PositionUnit
		p := joined.Position
		if math.Abs(p[0]-spawn[0]) > 1+quantum || math.Abs(p[2]-spawn[2]) > 1+quantum || math.Abs(p[1]-(spawn[1]+2)) > quantum {
			t.Errorf("joined at %v, want within 1 of spawn %v on x/z and at y %v", p, spawn, spawn[1]+2)
		}

		// presence_state: both users, bob's meta with his ref.
		if len(presence.State) != 2 {
			t.Errorf("presence_state keys %v, want alice and bob", presence.State)
		}
		metas := presence.State["bob"].Metas
		if len(metas) != 1 || metas[0].Ref != joined.PresenceRef || metas[0].Name != "Bob" || metas[0].Device != "quest" {
			t.Errorf("bob's metas %+v, want one with ref %s", metas, joined.PresenceRef)
		}

		// Within one tick, the others learn of bob.
		w.ticks(1)
		got := alice.takeFrames()
		diffs := only[*codec.EntitiesDiff](got)
		if len(diffs) != 1 || diffs[0].Creates["bob"][rooms.ComponentAvatar] != true {
			t.Fatalf("alice got entities diffs %v, want a create of bob's avatar", asJSON(t, diffs))
		}
		if pos, ok := vec(diffs[0].Creates["bob"]["position"], 3); !ok || !slices.Equal(pos, joined.Position[:]) {
			t.Errorf("bob's avatar created at %v, want %v", diffs[0].Creates["bob"]["position"], joined.Position)
		}
		pd := only[*codec.PresenceDiff](got)
		if len(pd) != 1 || !slices.Equal(metaRefs(pd[0].Joins, "bob"), []string{joined.PresenceRef}) || len(pd[0].Leaves) != 0 {
			t.Errorf("alice got presence diffs %v, want bob's join", asJSON(t, pd))
		}
		events := only[*codec.Event](got)
		if len(events) != 1 || events[0].Name != codec.EventUserJoined || events[0].User != "bob" {
			t.Errorf("alice got events %v, want user_joined by bob", asJSON(t, events))
		}
	})
}

func TestJoinRefusesInvalidRequests(t *testing.T) {
	long := string(make([]byte, rooms.MaxIDLength+1))
	tests := []struct {
		name string
		room string
		req  rooms.JoinRequest
	}{
		{"an empty room id is invalid", "", rooms.JoinRequest{User: "u1"}},
		{"a room id with a space is invalid", "the lobby", rooms.JoinRequest{User: "u1"}},
		{"a room id with a slash is invalid", "a/b", rooms.JoinRequest{User: "u1"}},
		{"a room id over 64 bytes is invalid", long, rooms.JoinRequest{User: "u1"}},
		{"a room id of non-ASCII letters is invalid", "salle-été", rooms.JoinRequest{User: "u1"}},
		{"a user id with a space is invalid", "lobby", rooms.JoinRequest{User: "u 1"}},
		{"a user id over 64 bytes is invalid", "lobby", rooms.JoinRequest{User: long}},
		{"a device with a NUL is invalid", "lobby", rooms.JoinRequest{User: "u1", Device: "d\x00"}},
		{"a name with a control character is invalid", "lobby", rooms.JoinRequest{User: "u1", Name: "bell\a"}},
		{"a name over 64 bytes is invalid", "lobby", rooms.JoinRequest{User: "u1", Name: string(slices.Repeat([]byte("x"), 65))}},
		{"a name that is not UTF-8 is invalid", "lobby", rooms.JoinRequest{User: "u1", Name: "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
				m := newMember(t, "m")
				_, err := w.reg.Join(t.Context(), tt.room, m, tt.req)
				if !errors.Is(err, rooms.ErrInvalid) {
					t.Errorf("Join = %v, want ErrInvalid", err)
				}
				if frames, dgs := m.take(); len(frames)+len(dgs) != 0 {
					t.Errorf("refused joiner got %v", types(frames))
				}
			})
		})
	}
}

func TestJoinMakesUpAUserIDAndRefusesAnEntityID(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		m := newMember(t, "anon")
		ms := w.joinReq("lobby", m, rooms.JoinRequest{})
		if !rooms.ValidID(ms.User()) {
			t.Fatalf("made-up user id %q", ms.User())
		}
		joined := only[*codec.Joined](m.takeFrames())
		if len(joined) != 1 || joined[0].User != ms.User() {
			t.Fatalf("joined %v, want user %s", asJSON(t, joined), ms.User())
		}

		id, err := ms.CreateEntity(rooms.Components{"lamp": true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.reg.Join(t.Context(), "lobby", newMember(t, "x"), rooms.JoinRequest{User: id})
		if !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("join as entity %s = %v, want ErrInvalid", id, err)
		}
	})
}

func TestJoinIntoAFullRoom(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMembers = 2
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		w.join("lobby", "alice", newMember(t, "alice"))
		w.join("lobby", "bob", newMember(t, "bob"))
		carol := newMember(t, "carol")
		if _, err := w.reg.Join(t.Context(), "lobby", carol, rooms.JoinRequest{User: "carol"}); !errors.Is(err, rooms.ErrRoomFull) {
			t.Errorf("third user's join = %v, want ErrRoomFull", err)
		}
		if frames, _ := carol.take(); len(frames) != 0 {
			t.Errorf("refused joiner got %v", types(frames))
		}
		// Another device of a present user needs no slot.
		w.joinDevice("lobby", "alice", "phone", newMember(t, "alice2"))
		if s := w.reg.Room("lobby").Stats(); s.Users != 2 || s.Devices != 3 {
			t.Errorf("stats %+v, want 2 users on 3 devices", s)
		}
	})
}

func TestRoomsAreIsolated(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice, bob := newMember(t, "alice"), newMember(t, "bob")
		ma := w.join("room-a", "alice", alice)
		mb := w.join("room-b", "bob", bob)
		w.ticks(5)
		bob.clear()

		rec := handsPose(1, 4.5, 1.5, -4.5)
		if _, err := ma.UpdatePose(rec); err != nil {
			t.Fatal(err)
		}
		if err := ma.Publish("door_opened", map[string]any{"door": "d1"}); err != nil {
			t.Fatal(err)
		}
		id, err := ma.CreateEntity(rooms.Components{"lamp": true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.join("room-a", "carol", newMember(t, "carol"))
		w.ticks(2)

		frames, dgs := bob.take()
		if len(frames) != 0 {
			t.Errorf("bob in room B got %v", asJSON(t, frames))
		}
		for _, d := range dgs {
			for _, r := range d.records {
				if string(r.rec) == string(rec) {
					t.Errorf("bob in room B got alice's pose")
				}
			}
		}
		if err := mb.Resync(); err != nil {
			t.Fatal(err)
		}
		state := only[*codec.EntitiesState](bob.takeFrames())
		if len(state) != 1 {
			t.Fatalf("resync got %d entities_state", len(state))
		}
		for _, gone := range []string{"alice", "carol", id} {
			if _, ok := state[0].Entities[gone]; ok {
				t.Errorf("room B's world holds room A's %s", gone)
			}
		}
		if _, ok := w.entities("room-b")[id]; ok {
			t.Errorf("room B's store holds room A's entity")
		}
	})
}

func TestAnEmptyRoomStopsAndRestartsFromTheStore(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		alice := newMember(t, "alice")
		ma := w.join("lobby", "alice", alice)
		first := only[*codec.EntitiesState](alice.takeFrames())[0]
		id, err := ma.CreateEntity(rooms.Components{"lamp": map[string]any{"on": true}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		room := w.reg.Room("lobby")
		w.ticks(1)
		ma.Leave()
		if err := ma.Publish("wave", nil); !errors.Is(err, rooms.ErrLeft) {
			t.Errorf("Publish after Leave = %v, want ErrLeft", err)
		}

		graceTicks := int(w.cfg.EmptyGrace / w.cfg.Tick)
		w.ticks(graceTicks - 1)
		if w.reg.Room("lobby") != room {
			t.Fatalf("room stopped before its empty grace")
		}
		w.ticks(1)
		if w.reg.Room("lobby") != nil || len(w.reg.Rooms()) != 0 {
			t.Fatalf("room still live after its empty grace")
		}

		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob)
		again := w.reg.Room("lobby")
		if again == nil || again == room {
			t.Fatalf("join did not start the room afresh")
		}
		state := only[*codec.EntitiesState](bob.takeFrames())[0]
		if asJSON(t, state.Entities[id]) != `{"lamp":{"on":true}}` {
			t.Errorf("the restarted room's lamp is %v", asJSON(t, state.Entities[id]))
		}
		for eid, c := range first.Entities {
			if eid == "alice" {
				continue
			}
			if asJSON(t, state.Entities[eid]) != asJSON(t, c) {
				t.Errorf("entity %s was %v, now %v", eid, asJSON(t, c), asJSON(t, state.Entities[eid]))
			}
		}
		if _, ok := state.Entities["alice"]; ok {
			t.Errorf("alice's avatar outlived her")
		}
		if len(state.Entities) != len(first.Entities)+1 { // alice's avatar out, the lamp and bob's in
			t.Errorf("restarted room has %d entities, want %d", len(state.Entities), len(first.Entities)+1)
		}
	})
}

func TestAJoinKeepsAnEmptyRoomAlive(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		room := w.reg.Room("lobby")
		ma.Leave()
		w.ticks(int(w.cfg.EmptyGrace/w.cfg.Tick) - 2)
		mb := w.join("lobby", "bob", newMember(t, "bob"))
		w.ticks(int(w.cfg.EmptyGrace/w.cfg.Tick) * 2)
		if w.reg.Room("lobby") != room {
			t.Fatalf("an occupied room stopped")
		}
		mb.Leave()
		w.ticks(int(w.cfg.EmptyGrace/w.cfg.Tick) + 1)
		if w.reg.Room("lobby") != nil {
			t.Fatalf("room still live after its empty grace")
		}
	})
}

func TestCloseFlushesPendingChanges(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		var ids []string
		for i := range 5 {
			id, err := ma.CreateEntity(rooms.Components{"n": i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := ma.UpdateEntity(ids[0], rooms.Components{"n": 10}, nil); err != nil {
			t.Fatal(err)
		}
		if err := ma.DeleteEntity(ids[1], nil); err != nil {
			t.Fatal(err)
		}
		w.reg.Close()
		got := w.entities("lobby")
		want := map[int]string{0: `{"n":10}`, 2: `{"n":2}`, 3: `{"n":3}`, 4: `{"n":4}`}
		for i, id := range ids {
			if want[i] != "" && asJSON(t, got[id]) != want[i] {
				t.Errorf("entity %d in the store: %s, want %s", i, asJSON(t, got[id]), want[i])
			}
		}
		if _, ok := got[ids[1]]; ok {
			t.Errorf("deleted entity is in the store")
		}
		if _, err := w.reg.Join(t.Context(), "lobby", newMember(t, "late"), rooms.JoinRequest{User: "late"}); !errors.Is(err, rooms.ErrClosed) {
			t.Errorf("join after Close = %v, want ErrClosed", err)
		}
	})
}

func TestCloseWaitsForABlockedStore(t *testing.T) {
	store := &gatedStore{}
	inBubble(t, testConfig(), store, func(t *testing.T, w *world) {
		store.block()
		ma := w.join("lobby", "alice", newMember(t, "alice"))
		var ids []string
		for i := range 3 {
			id, err := ma.CreateEntity(rooms.Components{"n": i}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		synctest.Wait()
		closed := make(chan struct{})
		go func() {
			w.reg.Close()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned with changes waiting for the store")
		default:
		}
		store.release()
		<-closed
		got := w.entities("lobby")
		for i, id := range ids {
			if n, _ := num(got[id]["n"]); n != float64(i) {
				t.Errorf("entity %d in the store: %v", i, got[id])
			}
		}
		if order := store.applied(); !slices.Equal(order, ids) {
			t.Errorf("store applied %v, want %v", order, ids)
		}
	})
}

func TestJoinOnTooManyDevices(t *testing.T) {
	cfg := testConfig()
	cfg.MaxDevices = 2
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		d1 := w.joinDevice("lobby", "alice", "a", newMember(t, "a"))
		w.joinDevice("lobby", "alice", "b", newMember(t, "b"))
		_, err := w.reg.Join(t.Context(), "lobby", newMember(t, "c"), rooms.JoinRequest{User: "alice", Device: "c"})
		if !errors.Is(err, rooms.ErrInvalid) {
			t.Errorf("third device = %v, want ErrInvalid", err)
		}
		// A dropped device's reconnect takes its place rather than adding one.
		d1.Disconnect(time.Now())
		again := newMember(t, "a again")
		w.joinDevice("lobby", "alice", "a", again)
		if !joinedOf(t, again).Resumed {
			t.Errorf("the reconnect was not resumed")
		}
	})
}

func TestFreedSlotsRestBeforeReuse(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMembers = 3
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		slot := func(user string) int {
			t.Helper()
			return w.join("lobby", user, newMember(t, user)).Slot()
		}
		alice := w.join("lobby", "alice", newMember(t, "alice"))
		bob := w.join("lobby", "bob", newMember(t, "bob"))
		if alice.Slot() != 0 || bob.Slot() != 1 {
			t.Fatalf("slots %d, %d; want 0, 1", alice.Slot(), bob.Slot())
		}
		alice.Leave()
		if got := slot("carol"); got != 2 {
			t.Errorf("carol got slot %d, want the fresh 2 rather than alice's", got)
		}
		w.ticks(2)
		bob.Leave()
		if got := slot("dave"); got != 0 {
			t.Errorf("dave got slot %d, want 0, the slot freed longest ago", got)
		}
		w.ticks(20) // well past the quarantine
		if got := slot("erin"); got != 1 {
			t.Errorf("erin got slot %d, want the rested 1", got)
		}
	})
}

func TestNewRegistryChecksItsConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  rooms.Config
	}{
		{"a tick under a millisecond is refused", rooms.Config{Tick: time.Microsecond}},
		{"negative repeats are refused", rooms.Config{RepeatTicks: -1}},
		{"more members than a tick can number are refused", rooms.Config{MaxMembers: rooms.MaxRoomSize + 1}},
		{"a negative grace is refused", rooms.Config{ReconnectGrace: -time.Second}},
		{"a negative heartbeat is refused", rooms.Config{Heartbeat: -time.Second}},
		{"a negative device limit is refused", rooms.Config{MaxDevices: -1}},
		{"a negative backlog is refused", rooms.Config{MaxPendingChanges: -1}},
		{"a negative sync interval is refused", rooms.Config{SyncInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := rooms.NewRegistry(&rooms.MemoryStore{}, tt.cfg); err == nil {
				t.Errorf("NewRegistry(%+v) = nil error", tt.cfg)
			}
		})
	}
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	got := reg.Config()
	if got.Tick != 200*time.Millisecond || got.RepeatTicks != 3 || got.Heartbeat != time.Second || got.StaleAfter != time.Second ||
		got.ReconnectGrace != 15*time.Second || got.EmptyGrace != 30*time.Second || got.MaxMembers != 256 || got.SyncInterval != got.Tick || got.Logger == nil {
		t.Errorf("defaults %+v", got)
	}
}
