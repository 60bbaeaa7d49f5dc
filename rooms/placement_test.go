package rooms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// directory is a Placement for one node, "here", of a cluster whose other
// nodes the test plays: a room is claimed by whoever asks first, with an
// epoch one higher than any before.
type directory struct {
	mu       sync.Mutex        // guards the following
	owners   map[string]string // room -> node
	epochs   map[string]uint64 // room -> epoch of its claim
	epoch    uint64
	claims   []string // rooms claimed by here, in order
	released []string // "room@epoch" released by here, in order
	down     bool
}

func newDirectory() *directory {
	return &directory{owners: map[string]string{}, epochs: map[string]uint64{}}
}

func (d *directory) Claim(ctx context.Context, room string) (rooms.Claim, error) {
	return d.claimFor("here", room)
}

func (d *directory) claimFor(node, room string) (rooms.Claim, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return rooms.Claim{}, fmt.Errorf("%w: directory unreachable", rooms.ErrUnavailable)
	}
	switch owner := d.owners[room]; owner {
	case "":
		d.epoch++
		d.owners[room], d.epochs[room] = node, d.epoch
	case node:
	default:
		return rooms.Claim{}, &rooms.ElsewhereError{Room: room, Owner: codec.Location{Node: owner, URL: "https://" + owner + ":4433/wt"}}
	}
	if node == "here" {
		d.claims = append(d.claims, room)
	}
	return rooms.Claim{Epoch: d.epochs[room]}, nil
}

// takeOver gives a room to node, as a node that found its owner dead does.
func (d *directory) takeOver(node, room string) rooms.Claim {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.epoch++
	d.owners[room], d.epochs[room] = node, d.epoch
	return rooms.Claim{Epoch: d.epoch}
}

func (d *directory) Lookup(ctx context.Context, room string) (codec.Location, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if owner := d.owners[room]; owner != "" && owner != "here" {
		return codec.Location{Node: owner, URL: "https://" + owner + ":4433/wt"}, true, nil
	}
	return codec.Location{}, false, nil
}

func (d *directory) Release(ctx context.Context, room string, c rooms.Claim) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.owners[room] == "here" && d.epochs[room] == c.Epoch {
		delete(d.owners, room)
	}
	d.released = append(d.released, fmt.Sprintf("%s@%d", room, c.Epoch))
	return nil
}

func (d *directory) log() (claims, released []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.claims...), append([]string(nil), d.released...)
}

func clusterConfig(d *directory) rooms.Config {
	cfg := testConfig()
	cfg.Placement = d
	return cfg
}

func TestAJoinToARoomOfAnotherNodeIsToldWhere(t *testing.T) {
	d := newDirectory()
	d.claimFor("there", "lobby")
	store := &rooms.MemoryStore{}
	inBubble(t, clusterConfig(d), store, func(t *testing.T, w *world) {
		_, err := w.reg.Join(context.Background(), "lobby", newMember(t, "alice"), rooms.JoinRequest{User: "alice"})
		var elsewhere *rooms.ElsewhereError
		if !errors.As(err, &elsewhere) || elsewhere.Owner.Node != "there" || elsewhere.Owner.URL != "https://there:4433/wt" {
			t.Fatalf("join = %v, want the room elsewhere, on there", err)
		}
		if w.reg.Room("lobby") != nil {
			t.Error("the room runs here too")
		}
		if _, err := store.Room(context.Background(), "lobby"); !errors.Is(err, rooms.ErrRoomNotFound) {
			t.Errorf("a room that runs elsewhere was loaded here: %v", err)
		}
		owner, here, err := w.reg.Locate(context.Background(), "lobby", true)
		if err != nil || here || owner.Node != "there" {
			t.Errorf("Locate = %+v, %v, %v; want there", owner, here, err)
		}
	})
}

func TestARoomHoldsItsClaimUntilItsLastChangesAreWritten(t *testing.T) {
	d := newDirectory()
	store := &gatedStore{}
	inBubble(t, clusterConfig(d), store, func(t *testing.T, w *world) {
		m := w.join("lobby", "alice", newMember(t, "alice"))
		if claims, _ := d.log(); len(claims) != 1 {
			t.Fatalf("claims %v, want one for lobby", claims)
		}
		store.block()
		if _, err := m.CreateEntity(rooms.Components{"lamp": true}, nil); err != nil {
			t.Fatal(err)
		}
		m.Leave()
		w.ticks(int(w.cfg.EmptyGrace/w.cfg.Tick) + 1)
		if w.reg.Room("lobby") != nil {
			t.Fatal("the empty room did not stop")
		}
		if _, released := d.log(); len(released) != 0 {
			t.Fatalf("claim released (%v) before the room's last change was written", released)
		}
		store.release()
		synctest.Wait()
		if _, released := d.log(); fmt.Sprint(released) != "[lobby@1]" {
			t.Errorf("released %v, want [lobby@1]", released)
		}
		if got := store.applied(); len(got) != 1 {
			t.Errorf("store applied %v, want the lamp", got)
		}
	})
}

func TestLocateReservesARoomForTheJoinToCome(t *testing.T) {
	d := newDirectory()
	inBubble(t, clusterConfig(d), nil, func(t *testing.T, w *world) {
		// A room located and then joined is claimed once.
		if _, here, err := w.reg.Locate(context.Background(), "lobby", true); err != nil || !here {
			t.Fatalf("Locate(lobby) = %v, %v; want here", here, err)
		}
		if _, err := d.claimFor("there", "lobby"); err == nil {
			t.Fatal("another node claimed a room reserved here")
		}
		w.join("lobby", "alice", newMember(t, "alice"))
		if claims, _ := d.log(); fmt.Sprint(claims) != "[lobby]" {
			t.Errorf("claims %v, want one of lobby", claims)
		}

		// A room located and never joined is released after the empty grace.
		if _, here, err := w.reg.Locate(context.Background(), "hall", true); err != nil || !here {
			t.Fatalf("Locate(hall) = %v, %v; want here", here, err)
		}
		time.Sleep(w.cfg.EmptyGrace - time.Second)
		synctest.Wait()
		if _, released := d.log(); len(released) != 0 {
			t.Fatalf("released %v before the grace", released)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, released := d.log(); fmt.Sprint(released) != "[hall@2]" {
			t.Errorf("released %v, want [hall@2]", released)
		}
		if _, err := d.claimFor("there", "hall"); err != nil {
			t.Errorf("hall is not free for others: %v", err)
		}
	})
}

func TestANodeWithoutItsDirectoryServesItsRoomsAndRefusesNewOnes(t *testing.T) {
	d := newDirectory()
	inBubble(t, clusterConfig(d), nil, func(t *testing.T, w *world) {
		alice := newMember(t, "alice")
		ma := w.join("lobby", "alice", alice)
		d.mu.Lock()
		d.down = true
		d.mu.Unlock()
		bob := newMember(t, "bob")
		w.join("lobby", "bob", bob) // a live room needs no directory
		if _, err := ma.CreateEntity(rooms.Components{"lamp": true}, nil); err != nil {
			t.Errorf("entity change in a live room: %v", err)
		}
		_, err := w.reg.Join(context.Background(), "hall", newMember(t, "carol"), rooms.JoinRequest{User: "carol"})
		if !errors.Is(err, rooms.ErrUnavailable) {
			t.Errorf("join of a new room without the directory = %v, want ErrUnavailable", err)
		}
		if _, _, err := w.reg.Locate(context.Background(), "hall", true); !errors.Is(err, rooms.ErrUnavailable) {
			t.Errorf("Locate of a new room without the directory = %v, want ErrUnavailable", err)
		}
	})
}

func TestAnEvictedRoomSaysWhereItWentAndStops(t *testing.T) {
	d := newDirectory()
	inBubble(t, clusterConfig(d), nil, func(t *testing.T, w *world) {
		alice, bob := newMember(t, "alice"), newMember(t, "bob")
		ma := w.join("lobby", "alice", alice)
		w.join("lobby", "bob", bob)
		w.ticks(1)
		seq, before := w.reg.PresenceSnapshot(nil)
		if len(before["lobby"]) != 2 {
			t.Fatalf("presence before %v", before)
		}
		alice.clear()
		bob.clear()

		d.takeOver("there", "lobby")
		owner := codec.Location{Node: "there", URL: "https://there:4433/wt"}
		w.reg.Evict("lobby", rooms.Claim{Epoch: 2}, &owner) // a claim of another time: nothing
		synctest.Wait()
		if w.reg.Room("lobby") == nil {
			t.Fatal("an eviction under another claim stopped the room")
		}
		w.reg.Evict("lobby", rooms.Claim{Epoch: 1}, &owner)
		synctest.Wait()
		for _, m := range []*fakeMember{alice, bob} {
			frames := m.takeFrames()
			g := only[*codec.Goodbye](frames)
			if len(g) != 1 || g[0].Code != codec.CodeMoved || g[0].Moved == nil || g[0].Moved.Node != "there" {
				t.Errorf("%s got %v, want one goodbye moved to there", m.name, types(frames))
			}
			m.mu.Lock()
			closed := m.closed
			m.mu.Unlock()
			if !closed {
				t.Errorf("%s was not closed", m.name)
			}
		}
		if _, err := ma.CreateEntity(rooms.Components{"lamp": true}, nil); !errors.Is(err, rooms.ErrLeft) {
			t.Errorf("a change after eviction = %v, want ErrLeft", err)
		}
		if w.reg.Room("lobby") != nil {
			t.Error("the evicted room is live")
		}
		after, state := w.reg.PresenceSnapshot(nil)
		if after <= seq || len(state) != 0 {
			t.Errorf("presence after eviction at %d: %v, want none past %d", after, state, seq)
		}
		if _, released := d.log(); len(released) != 0 {
			t.Errorf("an evicted room released %v, a claim that is not its own", released)
		}
		// A join here is now sent there.
		_, err := w.reg.Join(context.Background(), "lobby", newMember(t, "carol"), rooms.JoinRequest{User: "carol"})
		var elsewhere *rooms.ElsewhereError
		if !errors.As(err, &elsewhere) || elsewhere.Owner.Node != "there" {
			t.Errorf("join after eviction = %v, want elsewhere", err)
		}
	})
}

func TestARoomWhoseStoreIsFencedEvictsItself(t *testing.T) {
	d := newDirectory()
	store := &rooms.MemoryStore{}
	inBubble(t, clusterConfig(d), store, func(t *testing.T, w *world) {
		alice := newMember(t, "alice")
		ma := w.join("lobby", "alice", alice)
		if _, err := ma.CreateEntity(rooms.Components{"first": true}, nil); err != nil {
			t.Fatal(err)
		}
		w.ticks(1)
		// Another node takes the room over (this one looked dead to it) and
		// fences the store; this node has not heard.
		c := d.takeOver("there", "lobby")
		if err := store.Fence(context.Background(), "lobby", c); err != nil {
			t.Fatal(err)
		}
		alice.clear()
		lost := make(chan error, 1)
		if _, err := ma.CreateEntity(rooms.Components{"second": true}, func(err error) { lost <- err }); err != nil {
			t.Fatal(err)
		}
		w.ticks(2)
		if err := <-lost; !errors.Is(err, rooms.ErrUnavailable) {
			t.Errorf("the fenced change was told %v, want ErrUnavailable", err)
		}
		frames := alice.takeFrames()
		if g := only[*codec.Goodbye](frames); len(g) != 1 || g[0].Code != codec.CodeMoved {
			t.Fatalf("alice got %v, want a goodbye moved", types(frames))
		}
		if w.reg.Room("lobby") != nil {
			t.Error("the fenced room still runs")
		}
		names := map[string]bool{}
		for _, c := range w.entities("lobby") {
			for k := range c {
				names[k] = true
			}
		}
		if !names["first"] || names["second"] {
			t.Errorf("store holds components %v: want the first change and not the fenced one", names)
		}
		if w.reg.PendingChanges() != 0 {
			t.Errorf("%d changes still wait for a store that refuses them", w.reg.PendingChanges())
		}
	})
}

func TestPresenceUpdatesFollowASnapshotInOrder(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		w.join("lobby", "alice", newMember(t, "alice"))
		w.ticks(1)
		var mu sync.Mutex
		var updates []rooms.PresenceUpdate
		var seq uint64
		var state map[string]rooms.RoomPresence
		cancel := w.reg.WatchPresence(func(at uint64, now map[string]rooms.RoomPresence) {
			seq, state = at, now
		}, func(u rooms.PresenceUpdate) {
			mu.Lock()
			updates = append(updates, u)
			mu.Unlock()
		})
		defer cancel()
		if len(state["lobby"]["alice"]) != 1 {
			t.Fatalf("snapshot %v, want alice in lobby", state)
		}
		mb := w.join("hall", "bob", newMember(t, "bob"))
		w.join("lobby", "carol", newMember(t, "carol"))
		w.ticks(1)
		mb.Leave()
		w.ticks(int(w.cfg.EmptyGrace/w.cfg.Tick) + 1) // hall stops
		mu.Lock()
		got := append([]rooms.PresenceUpdate(nil), updates...)
		mu.Unlock()
		for _, u := range got {
			seq++
			if u.Seq != seq {
				t.Fatalf("update %d follows %d", u.Seq, seq-1)
			}
			if state[u.Room] == nil {
				state[u.Room] = rooms.RoomPresence{}
			}
			rooms.ApplyPresence(state[u.Room], u.Joins, u.Leaves)
			if u.Gone || len(state[u.Room]) == 0 {
				delete(state, u.Room)
			}
		}
		// An empty room that stops has nothing more to say: bob's leave was
		// the last of hall.
		last := got[len(got)-1]
		if last.Room != "hall" || len(last.Leaves["bob"].Metas) != 1 || last.Gone {
			t.Errorf("last update %+v, want bob leaving hall", last)
		}
		now, want := w.reg.PresenceSnapshot(nil)
		if now != seq || asJSON(t, state) != asJSON(t, want) {
			t.Errorf("snapshot and updates applied to it give %s at %d; the registry holds %s at %d", asJSON(t, state), seq, asJSON(t, want), now)
		}
		if len(want["lobby"]) != 2 || len(want) != 1 {
			t.Errorf("presence %v, want alice and carol in lobby", asJSON(t, want))
		}
	})
}

func TestADeleteInAClusterHoldsTheRoomsClaim(t *testing.T) {
	d := newDirectory()
	store := &rooms.MemoryStore{}
	inBubble(t, clusterConfig(d), store, func(t *testing.T, w *world) {
		ctx := context.Background()
		for _, id := range []string{"mine", "theirs"} {
			if _, err := store.CreateRoom(ctx, rooms.RoomInfo{ID: id, Name: id}, nil); err != nil {
				t.Fatal(err)
			}
		}
		d.claimFor("there", "theirs")
		var elsewhere *rooms.ElsewhereError
		if err := w.reg.DeleteRoom(ctx, "theirs"); !errors.As(err, &elsewhere) {
			t.Errorf("deleting a room another node runs = %v, want elsewhere", err)
		}
		if _, err := store.Room(ctx, "theirs"); err != nil {
			t.Errorf("the room another node runs was deleted: %v", err)
		}
		if err := w.reg.DeleteRoom(ctx, "mine"); err != nil {
			t.Fatal(err)
		}
		claims, released := d.log()
		if fmt.Sprint(claims) != "[mine]" || fmt.Sprint(released) != "[mine@2]" {
			t.Errorf("claims %v, released %v: want mine claimed for the delete and released after", claims, released)
		}
	})
}

func TestRoomsLocatedButNeverJoinedAreBounded(t *testing.T) {
	d := newDirectory()
	cfg := clusterConfig(d)
	cfg.MaxRooms = 2
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		ctx := context.Background()
		for _, id := range []string{"a", "b"} {
			if _, here, err := w.reg.Locate(ctx, id, true); err != nil || !here {
				t.Fatalf("Locate(%s) = %v, %v", id, here, err)
			}
		}
		if _, _, err := w.reg.Locate(ctx, "c", true); !errors.Is(err, rooms.ErrTooManyRooms) {
			t.Errorf("a third room located = %v, want ErrTooManyRooms", err)
		}
		if _, here, err := w.reg.Locate(ctx, "a", true); err != nil || !here {
			t.Errorf("a room held already = %v, %v; want here", here, err)
		}
	})
}

func TestALookupClaimsNothing(t *testing.T) {
	d := newDirectory()
	d.claimFor("there", "theirs")
	inBubble(t, clusterConfig(d), nil, func(t *testing.T, w *world) {
		ctx := context.Background()
		if owner, here, err := w.reg.Locate(ctx, "theirs", false); err != nil || here || owner.Node != "there" {
			t.Errorf("Locate(theirs) = %+v, %v, %v; want there", owner, here, err)
		}
		if _, here, err := w.reg.Locate(ctx, "free", false); err != nil || !here {
			t.Errorf("Locate(free) = %v, %v; want here", here, err)
		}
		if claims, _ := d.log(); len(claims) != 0 {
			t.Errorf("a lookup claimed %v", claims)
		}
		if _, err := d.claimFor("there", "free"); err != nil {
			t.Errorf("the room looked up is not free for others: %v", err)
		}
	})
}
