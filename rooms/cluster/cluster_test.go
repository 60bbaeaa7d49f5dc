package cluster_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/cluster"
	"github.com/posecast/posecast/transport"
	"github.com/posecast/posecast/transport/client"
)

// owners returns the nodes on which room is live.
func owners(room string, nodes ...*testNode) []string {
	var out []string
	for _, n := range nodes {
		if n.live(room) {
			out = append(out, n.name)
		}
	}
	return out
}

// users lists a collection as room/user, sorted.
func users(col map[string]rooms.RoomPresence) string {
	var out []string
	for room, us := range col {
		for u := range us {
			out = append(out, room+"/"+u)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// collection returns what a watcher's subscription holds.
func collection(c *client.Client, sub uint32) string {
	return users(c.View().Collections[sub])
}

func TestAClaimIsExclusive(t *testing.T) {
	h := newHarness(t)
	nodes := []*testNode{h.startNode("a", 0), h.startNode("b", 1), h.startNode("c", 2)}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			c, joined, err := h.tryConnect(nodes[i%3], "r", fmt.Sprint("u", i))
			if err != nil {
				errs <- err
				return
			}
			if joined.Room != "r" {
				errs <- fmt.Errorf("joined %+v", joined)
			}
			_ = c
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := owners("r", nodes...)
	if len(got) != 1 {
		t.Fatalf("room r runs on %v, want exactly one node", got)
	}
	var owner *testNode
	for _, n := range nodes {
		if n.name == got[0] {
			owner = n
		}
	}
	if s := owner.reg.Room("r").Stats(); s.Users != 20 {
		t.Errorf("the owner holds %d users, want 20", s.Users)
	}
	// Another room goes to the node asked first.
	loc, err := client.LocateRoom(testContext(t), nodes[1].HTTP(), "r2", h.joinToken("r2", "x"))
	if err != nil || loc.URL != nodes[1].URL() {
		t.Errorf("r2 asked of b is placed at %+v, %v; want b", loc, err)
	}
	// Asked without a token (with an auth secret), a node claims nothing:
	// asking for random rooms does not fill the directory.
	if _, err := client.LocateRoom(testContext(t), nodes[1].HTTP(), "r3", ""); err != nil {
		t.Fatal(err)
	}
	h.connect(nodes[2], "r3", "u")
	if got := owners("r3", nodes...); fmt.Sprint(got) != "[c]" {
		t.Errorf("r3, looked up at b and joined through c, runs on %v; want c", got)
	}
}

func TestCertHashForARoomNamesItsOwnerOnEveryNode(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.startNode("a", 0), h.startNode("b", 1), h.startNode("c", 2)
	h.connect(a, "lobby", "ada")
	if got := owners("lobby", a, b, c); fmt.Sprint(got) != "[a]" {
		t.Fatalf("lobby runs on %v, want a", got)
	}
	current, next := a.srv.CertHashes()
	for _, n := range []*testNode{a, b, c} {
		loc, err := client.LocateRoom(testContext(t), n.HTTP(), "lobby", "")
		if err != nil {
			t.Fatal(err)
		}
		if loc.URL != a.URL() || loc.Current != current || loc.Next == nil || *loc.Next != *next {
			t.Errorf("/cert-hash?room=lobby on %s: %+v, want a's URL and hashes", n.name, loc)
		}
	}
	// A client sent there by any node gets in, to the same room.
	_, joined := h.connect(c, "lobby", "bob")
	if joined.Room != "lobby" || !a.live("lobby") || b.live("lobby") || c.live("lobby") {
		t.Errorf("bob joined %+v; lobby runs on %v", joined, owners("lobby", a, b, c))
	}
	if s := a.reg.Room("lobby").Stats(); s.Users != 2 {
		t.Errorf("lobby on a holds %d users, want 2", s.Users)
	}
}

func TestAJoinAtTheWrongNodeIsMovedAndFollowed(t *testing.T) {
	h := newHarness(t)
	a, b := h.startNode("a", 0), h.startNode("b", 1)
	ada, _ := h.connect(a, "lobby", "ada")

	// A client that goes straight to b is told where the room is.
	direct := b.dial()
	_, err := direct.Join(testContext(t), codec.Join{Room: "lobby", Token: h.joinToken("lobby", "bob")})
	var rerr *client.RequestError
	if !errors.As(err, &rerr) || rerr.Code != codec.CodeMoved || rerr.Moved == nil || rerr.Moved.URL != a.URL() || rerr.Moved.Node != "a" {
		t.Fatalf("join at b = %v, want moved to a", err)
	}
	// Connect follows it from b.
	bLoc := codec.Location{URL: b.URL()}
	bLoc.Current, bLoc.Next = b.srv.CertHashes()
	bob, joined, err := client.Connect(testContext(t), client.ConnectConfig{
		Location: &bLoc,
		Client:   client.Config{IdleTimeout: testIdle},
		Join:     codec.Join{Room: "lobby", Token: h.joinToken("lobby", "bob")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if joined.Room != "lobby" || b.live("lobby") {
		t.Errorf("joined %+v; lobby runs on %v", joined, owners("lobby", a, b))
	}
	// The two see each other: one room.
	eventually(t, "ada to see bob", func() bool { return len(ada.View().Presence["bob"]) == 1 })
}

func TestTwoNodesOnOneDatabaseRunARoomOnce(t *testing.T) {
	// As it was found: node a runs the room, and an entity is created
	// through node b. It must land in a's live room.
	h := newHarness(t)
	a, b := h.startNode("a", 0), h.startNode("b", 1)
	ada, _ := h.connect(a, "lobby", "ada")
	bob, _ := h.connect(b, "lobby", "bob")
	id, err := bob.CreateEntity(testContext(t), codec.Components{"lamp": true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "ada to see bob's lamp", func() bool { _, ok := ada.View().Entities[id]; return ok })
	if got := owners("lobby", a, b); fmt.Sprint(got) != "[a]" {
		t.Errorf("lobby runs on %v, want a alone", got)
	}
	eventually(t, "the lamp in the store", func() bool {
		entities, err := a.store.Entities(testContext(t), "lobby")
		return err == nil && entities[id] != nil
	})
}

func TestPresenceAcrossNodesByPattern(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.startNode("a", 0), h.startNode("b", 1), h.startNode("c", 2)
	h.connect(a, "lobby:1", "ada")
	h.connect(b, "lobby:2", "bob")
	h.connect(c, "game:1", "cy")
	if fmt.Sprint(owners("lobby:1", a, b, c), owners("lobby:2", a, b, c), owners("game:1", a, b, c)) != "[a] [b] [c]" {
		t.Fatal("rooms not placed where they were asked for first")
	}
	watcher, sub := h.watch(c, "^lobby:")
	eventually(t, "both lobbies in the collection on c", func() bool {
		return collection(watcher, sub) == "lobby:1/ada lobby:2/bob"
	})
	dee, _ := h.connect(b, "lobby:2", "dee")
	eventually(t, "dee in the collection", func() bool {
		return collection(watcher, sub) == "lobby:1/ada lobby:2/bob lobby:2/dee"
	})
	if err := dee.Leave(testContext(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dee gone from the collection", func() bool {
		return collection(watcher, sub) == "lobby:1/ada lobby:2/bob"
	})
	// The game room never shows, and the HTTP snapshot on any node is the
	// same as the stream.
	for _, n := range []*testNode{a, b, c} {
		eventually(t, "the HTTP snapshot on "+n.name, func() bool {
			req, _ := http.NewRequest(http.MethodGet, n.HTTP()+"/api/presence?match=%5Elobby%3A", nil)
			req.Header.Set("Authorization", "Bearer "+transport.APIToken(h.secret))
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer r.Body.Close()
			var snap map[string]rooms.RoomPresence
			var raw map[string]map[string]codec.PresenceEntry
			if decodeJSON(r, &raw) != nil {
				return false
			}
			snap = map[string]rooms.RoomPresence{}
			for room, us := range raw {
				snap[room] = rooms.RoomPresence{}
				for u, e := range us {
					snap[room][u] = e.Metas
				}
			}
			return users(snap) == collection(watcher, sub)
		})
	}
	if strings.Contains(collection(watcher, sub), "game") {
		t.Error("a room that does not match showed")
	}
}

func TestANodeThatCrashesLeavesNoGhosts(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.startNode("a", 0), h.startNode("b", 1), h.startNode("c", 2)
	h.connect(a, "lobby:1", "ada")
	bob, _ := h.connect(b, "lobby:2", "bob")
	h.connect(b, "lobby:2", "bea")
	watchA, subA := h.watch(a, "^lobby:")
	watchC, subC := h.watch(c, "^lobby:")
	eventually(t, "everyone in both collections", func() bool {
		return collection(watchA, subA) == "lobby:1/ada lobby:2/bea lobby:2/bob" && collection(watchC, subC) == collection(watchA, subA)
	})

	b.crash()
	eventually(t, "b's users gone from every collection", func() bool {
		return collection(watchA, subA) == "lobby:1/ada" && collection(watchC, subC) == "lobby:1/ada"
	})
	// b's clients notice (their sessions time out) and come back through
	// another node; b's room is claimed anew.
	select {
	case <-bob.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("bob's session to the dead node did not end")
	}
	_, joined := h.connect(a, "lobby:2", "bob")
	if joined.Room != "lobby:2" {
		t.Fatalf("bob rejoined %+v", joined)
	}
	if got := owners("lobby:2", a, c); len(got) != 1 {
		t.Fatalf("lobby:2 runs on %v after b died, want one live node", got)
	}
	// Every node's view is the live sessions, no more.
	eventually(t, "the collections to hold the live sessions", func() bool {
		return collection(watchA, subA) == "lobby:1/ada lobby:2/bob" && collection(watchC, subC) == "lobby:1/ada lobby:2/bob"
	})
	for _, n := range []*testNode{a, c} {
		if got := n.collector.Nodes(); slices.Contains(got, "b") {
			t.Errorf("%s still holds users of b: %v", n.name, got)
		}
	}
}

func TestAGracefulStopIsSeenAtOnce(t *testing.T) {
	h := newHarness(t)
	// A lease that outlives the test: only b's bye can explain its users
	// leaving, and only b's releases its room being claimable.
	h.leaseTTL = 5 * time.Minute
	a, b := h.startNode("a", 0), h.startNode("b", 1)
	h.connect(b, "lobby:2", "bob")
	watcher, sub := h.watch(a, "^lobby:")
	eventually(t, "bob in the collection", func() bool { return collection(watcher, sub) == "lobby:2/bob" })
	b.stop()
	eventually(t, "bob gone from the collection", func() bool { return collection(watcher, sub) == "" })
	_, joined := h.connect(a, "lobby:2", "bea")
	if joined.Room != "lobby:2" || !a.live("lobby:2") {
		t.Errorf("lobby:2 was not claimable at once after b stopped")
	}
}

func TestARestartWithTheSameIDDropsTheOldIncarnation(t *testing.T) {
	h := newHarness(t)
	h.leaseTTL = 5 * time.Minute // only the new incarnation can explain the drop
	a, b := h.startNode("a", 0), h.startNode("b", 1)
	h.connect(b, "lobby:2", "bob")
	watcher, sub := h.watch(a, "^lobby:")
	eventually(t, "bob in the collection", func() bool { return collection(watcher, sub) == "lobby:2/bob" })
	old := b.node.Incarnation()

	// A second process with b's id, while b lives, is refused.
	dup, err := h.tryNode("b", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := dup.node.WaitLease(testContext(t)); !errors.Is(err, cluster.ErrDuplicateNode) {
		t.Fatalf("a second live b: %v, want ErrDuplicateNode", err)
	}
	dup.stop()
	if collection(watcher, sub) != "lobby:2/bob" {
		t.Fatalf("the refused duplicate changed the collection: %q", collection(watcher, sub))
	}
	b.crash()
	b2 := h.startNode("b", 2)
	if b2.node.Incarnation() == old {
		t.Fatal("the restart kept the incarnation")
	}
	eventually(t, "the old incarnation's users gone", func() bool { return collection(watcher, sub) == "" })
	// Its room is claimable by the new incarnation (or any node).
	_, joined := h.connect(a, "lobby:2", "bea")
	if joined.Room != "lobby:2" {
		t.Errorf("joined %+v", joined)
	}
}

func TestANatsServerFailoverDoesNotFlap(t *testing.T) {
	h := newHarness(t)
	a, c := h.startNode("a", 0), h.startNode("c", 2)
	cy, _ := h.connect(c, "lobby:3", "cy")
	watcher, sub := h.watch(a, "^lobby:")
	eventually(t, "cy in the collection", func() bool { return collection(watcher, sub) == "lobby:3/cy" })
	before := watcher.View().CollectionMessages

	// The NATS server under c goes away and comes back; then c's link
	// pauses for less than a lease.
	nats3.stop(2)
	eventually(t, "c to reconnect to another server", func() bool {
		return c.node.Ready() == nil && c.nc.ConnectedUrl() != c.proxies[0].URL()
	})
	if err := nats3.start(2); err != nil {
		t.Fatal(err)
	}
	c.pauseNATS()
	time.Sleep(testLeaseTTL / 2)
	c.resumeNATS()
	// Long enough for any lease to have lapsed and any leave to show, cy
	// must stay in the collection all along.
	for end := time.Now().Add(2 * testLeaseTTL); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := collection(watcher, sub); got != "lobby:3/cy" {
			t.Fatalf("the collection flapped to %q", got)
		}
	}

	if got := watcher.View().CollectionMessages; got != before {
		t.Errorf("%d presence messages during the failover: %v", got-before, watcher.View().Collections[sub])
	}
	if got := owners("lobby:3", a, c); fmt.Sprint(got) != "[c]" {
		t.Errorf("lobby:3 runs on %v, want c alone", got)
	}
	select {
	case <-cy.Done():
		t.Error("cy's session ended")
	default:
	}
	if err := nats3.waitJetStream(); err != nil {
		t.Fatal(err)
	}
}

func TestAPartitionedOwnerYields(t *testing.T) {
	h := newHarness(t)
	a, c := h.startNode("a", 0), h.startNode("c", 2)
	cy, _ := h.connect(c, "lobby:3", "cy")
	if _, err := cy.CreateEntity(testContext(t), codec.Components{"before": true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first change in the store", func() bool {
		e, err := a.store.EntitiesWith(testContext(t), "lobby:3", "before")
		return err == nil && len(e) == 1
	})
	c.pauseNATS()
	// While c is cut off longer than its lease, a client comes in through
	// a: a takes the room over.
	time.Sleep(testLeaseTTL + testSuspect)
	dee, joined := h.connect(a, "lobby:3", "dee")
	if joined.Room != "lobby:3" || !a.live("lobby:3") {
		t.Fatalf("a did not take lobby:3 over: %+v", joined)
	}
	if _, ok := dee.View().Entities["before"]; ok {
		t.Fatal("an entity named before?")
	}
	// c, still cut off, takes a change from cy: the store refuses it, as a
	// newer claim fenced the room.
	cy.Send(&codec.Create{Components: codec.Components{"during": true}})
	c.resumeNATS()
	// c notices and yields: cy gets a goodbye moved to a.
	select {
	case <-cy.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("cy was not moved off c")
	}
	g := cy.View().Goodbye
	if g == nil || g.Code != codec.CodeMoved {
		t.Fatalf("cy's goodbye %+v, want moved", g)
	}
	if g.Moved != nil && g.Moved.URL != a.URL() {
		t.Errorf("moved to %s, want a (%s)", g.Moved.URL, a.URL())
	}
	eventually(t, "one instance of lobby:3", func() bool { return fmt.Sprint(owners("lobby:3", a, c)) == "[a]" })
	// cy follows the move and lands in a's room; asked first, c may still
	// be taking its lease again, and a client tries again, as the page does.
	var cy2 *client.Client
	eventually(t, "cy back in through c", func() bool {
		var err error
		cy2, _, err = client.Connect(testContext(t), client.ConnectConfig{
			HTTP: c.HTTP(), Location: g.Moved,
			Client: client.Config{IdleTimeout: testIdle},
			Join:   codec.Join{Room: "lobby:3", Token: h.joinToken("lobby:3", "cy")},
		})
		return err == nil
	})
	defer cy2.Close()
	eventually(t, "dee to see cy back", func() bool { return len(dee.View().Presence["cy"]) > 0 })
	entities, err := a.store.Entities(testContext(t), "lobby:3")
	if err != nil {
		t.Fatal(err)
	}
	for id, comps := range entities {
		if comps["during"] != nil {
			t.Errorf("the partitioned owner's change %s reached the store", id)
		}
	}
}

func TestWithoutNatsANodeServesItsRoomsAndRefusesNewOnes(t *testing.T) {
	h := newHarness(t)
	a := h.startNode("a", 0)
	ada, _ := h.connect(a, "lobby", "ada")
	bob, _ := h.connect(a, "lobby", "bob")
	// Every NATS server out of a's reach.
	a.cutNATS()
	eventually(t, "/readyz to say why", func() bool {
		status, body := getStatus(t, a.HTTP()+"/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "NATS")
	})
	if status, _ := getStatus(t, a.HTTP()+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz %d without NATS, want 200", status)
	}
	// The room goes on: poses flow.
	if err := ada.SendPose(&codec.Pose{Time: 7, Head: codec.Transform{Position: [3]float64{1, 2, 3}, Rotation: codec.Identity.Rotation}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob to see ada's pose", func() bool {
		p, ok := bob.View().Poses[ada.View().User]
		return ok && p.Time == 7
	})
	// A new room cannot be placed, and the refusal says why.
	c := a.dial()
	_, err := c.Join(testContext(t), codec.Join{Room: "hall", Token: h.joinToken("hall", "cy")})
	var rerr *client.RequestError
	if !errors.As(err, &rerr) || rerr.Code != codec.CodeUnavailable || !strings.Contains(rerr.Message, "NATS") {
		t.Errorf("join of a new room without NATS = %v, want unavailable, saying why", err)
	}
}

func decodeJSON(r *http.Response, v any) error { return json.NewDecoder(r.Body).Decode(v) }

func TestADirectoryMadeAnewStillPlacesItsRooms(t *testing.T) {
	// NATS lost its buckets (a new server, an embedded one restarted): the
	// claims' revisions start again, lower than the ones the store fenced
	// with, and the rooms must still start.
	h := newHarness(t)
	a := h.startNode("a", 0)
	for i := range 5 { // the room's claim comes after others: a higher revision
		h.connect(a, fmt.Sprint("other", i), "x")
	}
	ada, _ := h.connect(a, "lobby", "ada")
	if _, err := ada.CreateEntity(testContext(t), codec.Components{"kept": true}); err != nil {
		t.Fatal(err)
	}
	a.stop()
	nc, err := nats.Connect(nats3.url(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{h.prefix + "_rooms", h.prefix + "_nodes"} {
		if err := js.DeleteKeyValue(testContext(t), bucket); err != nil {
			t.Fatal(err)
		}
	}
	b := h.startNode("b", 1)
	bob, _ := h.connect(b, "lobby", "bob")
	eventually(t, "the kept entity in the room", func() bool {
		for _, c := range bob.View().Entities {
			if c["kept"] == true {
				return true
			}
		}
		return false
	})
	if _, err := bob.CreateEntity(testContext(t), codec.Components{"after": true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new change in the store", func() bool {
		e, err := b.store.EntitiesWith(testContext(t), "lobby", "after")
		return err == nil && len(e) == 1
	})
}
