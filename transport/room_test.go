package transport

import (
	"context"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func TestThreeClientsSeeEachOtherMoveAndLeave(t *testing.T) {
	ts := startServer(t)
	users := []string{"ada", "bob", "cy"}
	clients := make([]*client.Client, len(users))
	for i, u := range users {
		clients[i], _ = join(t, ts, "lobby", u)
	}
	// Everyone sees everyone: in the snapshot or as creates.
	for i, c := range clients {
		waitFor(t, c, users[i]+" sees all three avatars", func(v *client.View) bool {
			for _, u := range users {
				if v.Entities[u]["avatar"] != true || len(v.Presence[u]) != 1 {
					return false
				}
			}
			return true
		})
	}
	// The spawn point is in everyone's world.
	v := clients[0].View()
	spawns := 0
	for _, comp := range v.Entities {
		if comp["spawn_point"] == true {
			spawns++
		}
	}
	if spawns != 1 {
		t.Errorf("%d spawn points, want 1", spawns)
	}

	// Ada moves: the others get her pose within two ticks of the update
	// numbering (one more for a datagram in flight).
	seqBefore := make([]uint32, len(clients))
	for i, c := range clients {
		seqBefore[i] = c.View().Seq
	}
	target := [3]float64{3.25, 1.6, -4.5}
	if err := clients[0].SendPose(pose(777, target[0], target[1], target[2])); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients[1:] {
		var seqAt uint32
		waitFor(t, c, users[i+1]+" sees ada move", func(v *client.View) bool {
			p, ok := v.Poses["ada"]
			if ok && p.Time == 777 && near(p.Head.Position, target) {
				seqAt = v.Seq
				return true
			}
			return false
		})
		if d := int32(seqAt - seqBefore[i+1]); d > 3 {
			t.Errorf("%s saw the move %d pose updates later, want <= 3", users[i+1], d)
		}
	}

	// Cy leaves: the others get the delete, user_left and a presence leave.
	if err := clients[2].Leave(testContext(t)); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients[:2] {
		waitFor(t, c, users[i]+" sees cy leave", func(v *client.View) bool {
			_, entity := v.Entities["cy"]
			_, present := v.Presence["cy"]
			_, posed := v.Poses["cy"]
			return !entity && !present && !posed && hasEvent(v, codec.EventUserLeft, "cy")
		})
	}
}

func TestJoinPlacesTheAvatarNearTheSpawnPoint(t *testing.T) {
	ts := startServer(t)
	c, j := join(t, ts, "plaza", "ada")
	var spawn [3]float64
	found := false
	for _, comp := range c.View().Entities {
		if comp["spawn_point"] == true {
			pos := comp["position"].([]any)
			for i := range 3 {
				switch v := pos[i].(type) {
				case float64:
					spawn[i] = v
				case int64:
					spawn[i] = float64(v)
				}
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no spawn point")
	}
	if spawn[0] < -10 || spawn[0] > 10 || spawn[2] < -10 || spawn[2] > 10 || spawn[1] != 0.1 {
		t.Errorf("spawn point at %v, want x, z in -10..10 and y 0.1", spawn)
	}
	p := j.Position
	if p[0] < spawn[0]-1 || p[0] > spawn[0]+1 || p[2] < spawn[2]-1 || p[2] > spawn[2]+1 || p[1] < spawn[1]+2-0.001 || p[1] > spawn[1]+2+0.001 {
		t.Errorf("placed at %v, want within ±1 of %v on x and z and 2 above on y", p, spawn)
	}
}

func TestOneUserOnTwoDevices(t *testing.T) {
	// A closed device is held for a reconnect this long before it leaves.
	ts := startServer(t, func(_ *Config, r *rooms.Config) { r.ReconnectGrace = 200 * time.Millisecond })
	watcher, _ := join(t, ts, "lobby", "watcher")
	headset, _ := join(t, ts, "lobby", "ada")
	laptop, _ := join(t, ts, "lobby", "ada")
	waitFor(t, watcher, "ada present with two metas", func(v *client.View) bool {
		return len(v.Presence["ada"]) == 2
	})
	metas := watcher.View().Presence["ada"]
	if metas[0].Ref == metas[1].Ref {
		t.Errorf("both devices have ref %q", metas[0].Ref)
	}

	laptop.Close()
	waitFor(t, watcher, "ada present with one meta", func(v *client.View) bool {
		return len(v.Presence["ada"]) == 1
	})
	if v := watcher.View(); hasEvent(&v, codec.EventUserLeft, "ada") || v.Entities["ada"] == nil {
		t.Fatal("ada left with one device still in the room")
	}

	headset.Close()
	waitFor(t, watcher, "ada gone", func(v *client.View) bool {
		_, present := v.Presence["ada"]
		return !present && v.Entities["ada"] == nil && hasEvent(v, codec.EventUserLeft, "ada")
	})
}

func TestAVanishedClientIsGoneWithinTheIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config, r *rooms.Config) {
		c.IdleTimeout = 500 * time.Millisecond
		r.ReconnectGrace = 500 * time.Millisecond
	})
	watcher, _ := join(t, ts, "lobby", "watcher")
	ghost, _ := join(t, ts, "lobby", "ghost")
	waitFor(t, watcher, "ghost present", func(v *client.View) bool { return v.Presence["ghost"] != nil })
	ghost.Abort()
	waitFor(t, watcher, "ghost gone", func(v *client.View) bool {
		_, present := v.Presence["ghost"]
		return !present && v.Entities["ghost"] == nil && hasEvent(v, codec.EventUserLeft, "ghost")
	})
}

func TestAReconnectKeepsTheAvatarWithoutAFlap(t *testing.T) {
	ts := startServer(t, func(c *Config, r *rooms.Config) { r.ReconnectGrace = 10 * time.Second })
	watcher, _ := join(t, ts, "lobby", "watcher")
	first := dial(t, ts)
	// Development mode: the server makes the user up and hands back a token
	// for joining again as that user.
	j1, err := first.Join(testContext(t), codec.Join{Room: "lobby", Device: "quest"})
	if err != nil {
		t.Fatal(err)
	}
	ada := j1.User
	if ada == "ada" || j1.Token == "" {
		t.Fatalf("joined as %q with token %q: want a user the server made up, and a token", ada, j1.Token)
	}
	waitFor(t, watcher, "ada present", func(v *client.View) bool { return v.Presence[ada] != nil })
	first.Close() // the page reloads: the session ends without a leave
	waitUntil(t, "the server to see the session end", func() bool { return ts.sessionOf(ada) == nil && ts.Sessions() == 1 })

	second := dial(t, ts)
	j2, err := second.Join(testContext(t), codec.Join{Room: "lobby", Device: "quest", Token: j1.Token})
	if err != nil {
		t.Fatal(err)
	}
	if !j2.Resumed || j2.Slot != j1.Slot || j2.User != ada {
		t.Errorf("rejoin: %s resumed %v slot %d, want %s resumed in slot %d", j2.User, j2.Resumed, j2.Slot, ada, j1.Slot)
	}
	waitFor(t, watcher, "ada's new device present", func(v *client.View) bool {
		metas := v.Presence[ada]
		return len(metas) == 1 && metas[0].Ref == j2.PresenceRef
	})
	if err := second.SendPose(pose(5, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "ada moved by the new device", func(v *client.View) bool { return v.Poses[ada].Time == 5 })
	v := watcher.View()
	if hasEvent(&v, codec.EventUserLeft, ada) || len(eventsNamed(&v, codec.EventUserJoined, ada)) != 1 {
		t.Errorf("a reconnect flapped: events %v", v.Events)
	}
}

func eventsNamed(v *client.View, name, user string) []codec.Event {
	var out []codec.Event
	for _, e := range v.Events {
		if e.Name == name && e.User == user {
			out = append(out, e)
		}
	}
	return out
}

func TestRoomsAreIsolated(t *testing.T) {
	ts := startServer(t)
	a1, _ := join(t, ts, "room-a", "ada")
	a2, _ := join(t, ts, "room-a", "bob")
	b, _ := join(t, ts, "room-b", "cy")
	ctx := testContext(t)
	if err := a1.SendPose(pose(1, 5, 5, 5)); err != nil {
		t.Fatal(err)
	}
	if err := a1.Publish(ctx, "door_opened", map[string]any{"door": "front"}); err != nil {
		t.Fatal(err)
	}
	id, err := a1.CreateEntity(ctx, codec.Components{"crate": true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a2, "bob sees everything ada did", func(v *client.View) bool {
		return v.Poses["ada"].Time == 1 && hasEvent(v, "door_opened", "ada") && v.Entities[id] != nil
	})
	// By then room-b has ticked past it; give it a few more ticks anyway.
	if err := b.SendPose(pose(2, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "cy's own pose comes back", func(v *client.View) bool { return v.Poses["cy"].Time == 2 })
	v := b.View()
	for _, leaked := range []string{"ada", "bob", id} {
		if _, ok := v.Entities[leaked]; ok {
			t.Errorf("room-b sees entity %q of room-a", leaked)
		}
		if _, ok := v.Poses[leaked]; ok {
			t.Errorf("room-b sees a pose of %q", leaked)
		}
		if _, ok := v.Presence[leaked]; ok {
			t.Errorf("room-b sees presence of %q", leaked)
		}
	}
	for _, e := range v.Events {
		if e.User != "cy" {
			t.Errorf("room-b got event %+v", e)
		}
	}
}

func TestALossyReceiverConvergesToEveryFinalPose(t *testing.T) {
	ts := startServer(t)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	lossy, _ := join(t, ts, "lobby", "lossy", func(c *client.Config) {
		c.DropDatagram = func() bool {
			mu.Lock()
			defer mu.Unlock()
			return rng.Float64() < 0.4
		}
	})
	const movers = 4
	final := make(map[string][3]float64)
	var wg sync.WaitGroup
	for i := range movers {
		c, _ := join(t, ts, "lobby", fmt.Sprint("mover", i))
		user := fmt.Sprint("mover", i)
		end := [3]float64{float64(i), 1.5, -float64(i)}
		final[user] = end
		wg.Go(func() {
			// Move for a while, then stand still at the end pose.
			for step := range 40 {
				f := float64(step) / 40
				if err := c.SendPose(pose(uint32(step+1), end[0]*f, 1.5, end[2]*f+0.01*float64(40-step))); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := c.SendPose(pose(1000, end[0], end[1], end[2])); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, lossy, "the lossy receiver holds every final pose", func(v *client.View) bool {
		for user, end := range final {
			if p, ok := v.Poses[user]; !ok || p.Time != 1000 || !near(p.Head.Position, end) {
				return false
			}
		}
		return true
	})
	t.Logf("lossy receiver: %d pose updates, %d resyncs", lossy.View().PoseUpdates, lossy.View().Resyncs)
}

func TestAReceiverThatLosesEverythingAsksForAResync(t *testing.T) {
	ts := startServer(t)
	var dropping sync.Mutex
	drop := true
	deaf, _ := join(t, ts, "lobby", "deaf", func(c *client.Config) {
		c.DropDatagram = func() bool {
			dropping.Lock()
			defer dropping.Unlock()
			return drop
		}
	})
	mover, _ := join(t, ts, "lobby", "mover")
	if err := mover.SendPose(pose(42, 2, 2, 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, mover, "the mover's pose went out and the room went quiet", func(v *client.View) bool {
		return v.Poses["mover"].Time == 42 && v.Heartbeats > 0
	})
	dropping.Lock()
	drop = false
	dropping.Unlock()
	// The deaf receiver lost every update with the pose; the next heartbeat
	// tells it so, and the resync's snapshot carries the pose.
	waitFor(t, deaf, "the deaf receiver resynced to the pose", func(v *client.View) bool {
		return v.Resyncs > 0 && v.Poses["mover"].Time == 42 && near(v.Poses["mover"].Head.Position, [3]float64{2, 2, 2})
	})
}

func TestExplicitLeaveAndRejoinInOneSession(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	c, _ := join(t, ts, "lobby", "ada")
	ctx := testContext(t)
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "ada left", func(v *client.View) bool { return hasEvent(v, codec.EventUserLeft, "ada") })
	if _, err := c.Join(ctx, codec.Join{Room: "other", Token: token(t, ts, "other", "ada")}); err != nil {
		t.Fatalf("join another room after leaving: %v", err)
	}
	if _, err := c.Join(ctx, codec.Join{Room: "third", Token: token(t, ts, "third", "ada")}); err == nil {
		t.Fatal("a second join without leaving succeeded")
	}
}

func TestServerShutdownSaysGoodbye(t *testing.T) {
	ts := startServer(t)
	c, _ := join(t, ts, "lobby", "ada")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "goodbye", func(v *client.View) bool { return v.Goodbye != nil || v.Closed })
	if g := c.View().Goodbye; g == nil || g.Code != codec.CodeServerShutdown {
		t.Errorf("goodbye = %+v, want code %s", g, codec.CodeServerShutdown)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("session still open after shutdown")
	}
}

func TestAClientAddressChangeKeepsTheSession(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	relay := startRelay(t, ts.Addr().String())
	walker, _ := join(t, ts, "lobby", "walker", func(c *client.Config) { c.URL = "https://" + relay.Addr() + Path })
	if err := walker.SendPose(pose(8, 1, 1.7, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the walker's pose", func(v *client.View) bool { return v.Poses["walker"].Time == 8 })

	// The walker's packets now reach the server from another address, as
	// when a headset's Wi-Fi address changes.
	relay.Rebind(t)
	if err := walker.SendPose(pose(9, 4, 1.7, 4)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the walker's pose from the new address", func(v *client.View) bool { return v.Poses["walker"].Time == 9 })
	if err := walker.Publish(testContext(t), "waved", nil); err != nil {
		t.Fatalf("control stream after the address change: %v", err)
	}
	v := watcher.View()
	if hasEvent(&v, codec.EventUserLeft, "walker") || len(v.Presence["walker"]) != 1 {
		t.Errorf("the address change flapped presence: %v", v.Presence["walker"])
	}
	if relay.Upstreams() < 2 {
		t.Fatal("the relay never changed address")
	}
}

func TestAPoseSentAsSoonAsJoinedIsTaken(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	// A session slow to record its membership after the room sent joined
	// (a busy machine) must still take the pose its client sends at once.
	slow := func() { time.Sleep(20 * time.Millisecond) }
	ts.testHookJoined.Store(&slow)
	for i := range 20 {
		c := dial(t, ts)
		j, err := c.Join(testContext(t), codec.Join{Room: "lobby"})
		if err != nil {
			t.Fatal(err)
		}
		// The first thing the client does on reading joined.
		if err := c.SendPose(pose(uint32(100+i), float64(i), 1.6, 0)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, watcher, "the newcomer's first pose", func(v *client.View) bool { return v.Poses[j.User].Time == uint32(100+i) })
		c.Close()
	}
	if n := testutil.ToFloat64(ts.metrics.rejNotJoined); n != 0 {
		t.Errorf("%v poses were refused as from a session not in a room", n)
	}
}

// gatedStore holds every room lookup until its gate opens, and says when
// the first one waits.
type gatedStore struct {
	rooms.MemoryStore
	gate    chan struct{}
	waiting chan struct{}
	once    sync.Once
}

func (s *gatedStore) Room(ctx context.Context, id string) (rooms.RoomInfo, error) {
	s.once.Do(func() { close(s.waiting) })
	select {
	case <-s.gate:
	case <-ctx.Done():
		return rooms.RoomInfo{}, ctx.Err()
	}
	return s.MemoryStore.Room(ctx, id)
}

func TestAShutdownDuringAJoinStillSaysGoodbye(t *testing.T) {
	store := &gatedStore{gate: make(chan struct{}), waiting: make(chan struct{})}
	ts := startServerOn(t, store)
	c := dial(t, ts)
	joined := make(chan error, 1)
	go func() {
		_, err := c.Join(testContext(t), codec.Join{Room: "lobby"})
		joined <- err
	}()
	<-store.waiting // the join waits on the store, the session's frames held

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- ts.Shutdown(ctx)
	}()
	waitFor(t, c, "the goodbye", func(v *client.View) bool { return v.Goodbye != nil })
	if g := c.View().Goodbye; g.Code != codec.CodeServerShutdown {
		t.Errorf("goodbye %+v, want %s", g, codec.CodeServerShutdown)
	}
	close(store.gate)
	if err := <-joined; err == nil {
		t.Error("the join succeeded on a server that shut down")
	}
	if err := <-shutdown; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
