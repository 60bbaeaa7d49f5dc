package rooms_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

func meta(ref string) codec.PresenceMeta { return codec.PresenceMeta{Ref: ref, Name: "n" + ref} }

func entry(refs ...string) codec.PresenceEntry {
	var e codec.PresenceEntry
	for _, r := range refs {
		e.Metas = append(e.Metas, meta(r))
	}
	return e
}

// view is what a subscriber holds, built from what it took.
type view map[string]map[string]codec.PresenceEntry

// apply folds a presence_collection into the view as a client would: a
// state replaces it; joins are added, then leaves removed, by phx_ref.
func (v view) apply(msg *codec.PresenceCollection) view {
	if msg == nil {
		return v
	}
	if msg.State != nil {
		v = view{}
		for room, users := range msg.State {
			v[room] = map[string]codec.PresenceEntry{}
			for user, e := range users {
				v[room][user] = e
			}
		}
		return v
	}
	for room, users := range msg.Joins {
		v.applyRoom(room, users, nil)
	}
	for room, users := range msg.Leaves {
		v.applyRoom(room, nil, users)
	}
	return v
}

// applyRoom applies one room's joins and leaves.
func (v view) applyRoom(room string, joins, leaves map[string]codec.PresenceEntry) {
	state := rooms.RoomPresence{}
	for user, e := range v[room] {
		state[user] = e.Metas
	}
	rooms.ApplyPresence(state, joins, leaves)
	v.set(room, state)
}

func (v view) set(room string, state rooms.RoomPresence) {
	if len(state) == 0 {
		delete(v, room)
		return
	}
	v[room] = map[string]codec.PresenceEntry{}
	for user, metas := range state {
		v[room][user] = codec.PresenceEntry{Metas: metas}
	}
}

// String renders a view as room/user=refs, sorted (the order of metas of
// one user on two nodes is not the client's to know), for comparisons.
func (v view) String() string {
	var parts []string
	for room, users := range v {
		for user, e := range users {
			var refs []string
			for _, m := range e.Metas {
				refs = append(refs, m.Ref)
			}
			slices.Sort(refs)
			parts = append(parts, fmt.Sprintf("%s/%s=%s", room, user, strings.Join(refs, ",")))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func TestACollectionSendsTheStateThenWhatChanged(t *testing.T) {
	c := rooms.NewCollector()
	c.Apply("a", rooms.PresenceUpdate{Room: "lobby:1", Joins: map[string]codec.PresenceEntry{"ada": entry("r1")}})
	c.Apply("b", rooms.PresenceUpdate{Room: "lobby:2", Joins: map[string]codec.PresenceEntry{"bob": entry("r2")}})
	c.Apply("b", rooms.PresenceUpdate{Room: "game:1", Joins: map[string]codec.PresenceEntry{"cy": entry("r3")}})
	sub := c.Subscribe(regexp.MustCompile(`^lobby:`))
	defer sub.Close()

	steps := []struct {
		name   string
		change func()
		want   string // the view after taking, "" for nothing to take
		none   bool   // Take must return nil
	}{
		{"the first take is the state of the matching rooms", func() {}, "lobby:1/ada=r1 lobby:2/bob=r2", false},
		{"nothing changed: nothing to take", func() {}, "", true},
		{"a room that does not match never shows", func() {
			c.Apply("b", rooms.PresenceUpdate{Room: "game:1", Joins: map[string]codec.PresenceEntry{"dee": entry("r4")}})
		}, "", true},
		{"a second device of a user joins", func() {
			c.Apply("a", rooms.PresenceUpdate{Room: "lobby:1", Joins: map[string]codec.PresenceEntry{"ada": entry("r5")}})
		}, "lobby:1/ada=r1,r5 lobby:2/bob=r2", false},
		{"a user who joined and left between takes was never there", func() {
			c.Apply("a", rooms.PresenceUpdate{Room: "lobby:1", Joins: map[string]codec.PresenceEntry{"eve": entry("r6")}})
			c.Apply("a", rooms.PresenceUpdate{Room: "lobby:1", Leaves: map[string]codec.PresenceEntry{"eve": entry("r6")}})
		}, "", true},
		{"a meta update is a leave of the old ref and a join of the new", func() {
			c.Apply("b", rooms.PresenceUpdate{Room: "lobby:2", Joins: map[string]codec.PresenceEntry{"bob": entry("r7")}, Leaves: map[string]codec.PresenceEntry{"bob": entry("r2")}})
		}, "lobby:1/ada=r1,r5 lobby:2/bob=r7", false},
		{"a room that stops takes its users with it", func() {
			c.Apply("b", rooms.PresenceUpdate{Room: "lobby:2", Gone: true})
		}, "lobby:1/ada=r1,r5", false},
		{"a user on a room that moved to another node is there once, with both nodes' metas", func() {
			c.Apply("b", rooms.PresenceUpdate{Room: "lobby:1", Joins: map[string]codec.PresenceEntry{"ada": entry("r8")}})
		}, "lobby:1/ada=r1,r5,r8", false},
		{"a dead node's users leave, and only they", func() { c.DropNode("a") }, "lobby:1/ada=r8", false},
		{"a node's state replaced by a snapshot", func() {
			c.SetNode("b", map[string]rooms.RoomPresence{"lobby:3": {"fay": {meta("r9")}}})
		}, "lobby:3/fay=r9", false},
	}
	v := view{}
	for _, st := range steps {
		st.change()
		msg := sub.Take()
		if st.none {
			if msg != nil {
				t.Errorf("%s: took %+v, want nothing", st.name, msg)
			}
			continue
		}
		if msg == nil {
			t.Fatalf("%s: took nothing", st.name)
		}
		v = v.apply(msg)
		if got := v.String(); got != st.want {
			t.Errorf("%s: view %q, want %q", st.name, got, st.want)
		}
		if got, want := v.String(), view(c.Snapshot(regexp.MustCompile(`^lobby:`))).String(); got != want {
			t.Errorf("%s: view %q, snapshot %q", st.name, got, want)
		}
	}
}

// TestACollectionConvergesWhateverHappens applies random presence changes
// from three nodes, taking now and then, and checks that a subscriber's view
// always equals the collector's snapshot.
func TestACollectionConvergesWhateverHappens(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := rooms.NewCollector()
	match := regexp.MustCompile(`[02]$`)
	subs := []*rooms.Subscription{c.Subscribe(match), c.Subscribe(match)}
	views := []view{{}, {}}
	nodes := []string{"a", "b", "c"}
	nextRef := 0
	held := map[string][]codec.PresenceMeta{} // node/room/user -> metas
	for step := range 3000 {
		node := nodes[rng.IntN(3)]
		room := fmt.Sprintf("room%d", rng.IntN(4))
		user := fmt.Sprintf("u%d", rng.IntN(5))
		key := node + "/" + room + "/" + user
		switch rng.IntN(10) {
		case 0:
			c.DropNode(node)
			for k := range held {
				if strings.HasPrefix(k, node+"/") {
					delete(held, k)
				}
			}
		case 1:
			c.Apply(node, rooms.PresenceUpdate{Room: room, Gone: true})
			for k := range held {
				if strings.HasPrefix(k, node+"/"+room+"/") {
					delete(held, k)
				}
			}
		case 2, 3, 4, 5:
			nextRef++
			m := meta(fmt.Sprint("r", nextRef))
			c.Apply(node, rooms.PresenceUpdate{Room: room, Joins: map[string]codec.PresenceEntry{user: {Metas: []codec.PresenceMeta{m}}}})
			held[key] = append(held[key], m)
		default:
			if len(held[key]) > 0 {
				m := held[key][rng.IntN(len(held[key]))]
				c.Apply(node, rooms.PresenceUpdate{Room: room, Leaves: map[string]codec.PresenceEntry{user: {Metas: []codec.PresenceMeta{m}}}})
				held[key] = slices.DeleteFunc(held[key], func(x codec.PresenceMeta) bool { return x.Ref == m.Ref })
			}
		}
		for i, s := range subs {
			if rng.IntN(3+4*i) == 0 { // the second takes less often
				views[i] = views[i].apply(s.Take())
				if got, want := views[i].String(), view(c.Snapshot(match)).String(); got != want {
					t.Fatalf("step %d, subscriber %d: view %q, snapshot %q", step, i, got, want)
				}
			}
		}
	}
}

func TestAMatchIsBoundedAndValid(t *testing.T) {
	tests := []struct {
		name, pattern string
		ok            bool
	}{
		{"a prefix", "^lobby:", true},
		{"everything", "", true},
		{"not a regular expression", "(", false},
		{"too long", strings.Repeat("a", rooms.MaxMatchLength+1), false},
		{"at the limit", strings.Repeat("a", rooms.MaxMatchLength), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rooms.CompileMatch(tt.pattern)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, rooms.ErrInvalid)) {
				t.Errorf("CompileMatch(%q) = %v", tt.pattern, err)
			}
		})
	}
}

func TestACollectionFollowsTheRegistry(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		w.join("lobby:1", "ada", newMember(t, "ada"))
		w.ticks(1)
		c := rooms.NewCollector()
		stop := c.Follow("here", w.reg)
		defer stop()
		sub := c.Subscribe(regexp.MustCompile(`^lobby:`))
		defer sub.Close()
		synctest.Wait() // the feed has what the registry held
		v := view{}.apply(sub.Take())
		mb := w.join("lobby:2", "bob", newMember(t, "bob"))
		w.join("game:1", "cy", newMember(t, "cy"))
		w.ticks(1)
		v = v.apply(sub.Take())
		mb.Leave()
		w.ticks(1)
		v = v.apply(sub.Take())
		var users []string
		for room, us := range v {
			for u := range us {
				users = append(users, room+"/"+u)
			}
		}
		if fmt.Sprint(users) != "[lobby:1/ada]" {
			t.Errorf("collection holds %v, want lobby:1/ada", users)
		}
		if got := c.Nodes(); fmt.Sprint(got) != "[here]" {
			t.Errorf("nodes %v", got)
		}
	})
}
