package rooms_test

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// BenchmarkCollector measures presence across rooms at the scale of a busy
// cluster: 1 000 rooms of 10 present users each (10 000 users) on 4 nodes.
// Each op is one presence update (a meta leaving and another joining: a
// reconnect, or a stale flip) applied to the collection; subscriptions take
// what changed every 100 updates, as an interval would. The sub-benchmarks
// are the subscriptions watching: none, one matching every room, and ten
// matching a tenth of the rooms each.
func BenchmarkCollector(b *testing.B) {
	const roomsN, usersPerRoom, nodes = 1000, 10, 4
	for _, subs := range []struct {
		name     string
		patterns []string
	}{
		{"no_subscription", nil},
		{"one_of_everything", []string{"."}},
		{"ten_of_a_tenth", func() []string {
			var p []string
			for i := range 10 {
				p = append(p, fmt.Sprintf(`^room%d\d*$`, i))
			}
			return p
		}()},
	} {
		b.Run(subs.name, func(b *testing.B) {
			c := rooms.NewCollector()
			for n := range nodes {
				state := map[string]rooms.RoomPresence{}
				for r := n; r < roomsN; r += nodes {
					users := rooms.RoomPresence{}
					for u := range usersPerRoom {
						users[fmt.Sprint("u", u)] = []codec.PresenceMeta{{Ref: fmt.Sprintf("p%d-%d", r, u), Name: "someone", OnlineAt: 1}}
					}
					state[fmt.Sprint("room", r)] = users
				}
				c.SetNode(fmt.Sprint("node", n), state)
			}
			var list []*rooms.Subscription
			for _, p := range subs.patterns {
				s := c.Subscribe(regexp.MustCompile(p))
				s.Take()
				list = append(list, s)
			}
			refs := make([]string, roomsN*usersPerRoom)
			for r := range roomsN {
				for u := range usersPerRoom {
					refs[r*usersPerRoom+u] = fmt.Sprintf("p%d-%d", r, u)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := (i * 7919) % len(refs)
				r, u := k/usersPerRoom, k%usersPerRoom
				next := fmt.Sprintf("q%d", i)
				user := fmt.Sprint("u", u)
				c.Apply(fmt.Sprint("node", r%nodes), rooms.PresenceUpdate{
					Room:   fmt.Sprint("room", r),
					Joins:  map[string]codec.PresenceEntry{user: {Metas: []codec.PresenceMeta{{Ref: next, Name: "someone", OnlineAt: 2}}}},
					Leaves: map[string]codec.PresenceEntry{user: {Metas: []codec.PresenceMeta{{Ref: refs[k]}}}},
				})
				refs[k] = next
				if i%100 == 99 {
					for _, s := range list {
						s.Take()
					}
				}
			}
		})
	}
}

// BenchmarkCollectorState measures a new subscriber's first take of 1 000
// rooms of 10 users: the whole state, as presence_collection or the HTTP
// snapshot builds it.
func BenchmarkCollectorState(b *testing.B) {
	c := rooms.NewCollector()
	state := map[string]rooms.RoomPresence{}
	for r := range 1000 {
		users := rooms.RoomPresence{}
		for u := range 10 {
			users[fmt.Sprint("u", u)] = []codec.PresenceMeta{{Ref: fmt.Sprintf("p%d-%d", r, u), Name: "someone", OnlineAt: 1}}
		}
		state[fmt.Sprint("room", r)] = users
	}
	c.SetNode("node0", state)
	all := regexp.MustCompile(".")
	b.ReportAllocs()
	for b.Loop() {
		s := c.Subscribe(all)
		if msg := s.Take(); len(msg.State) != 1000 {
			b.Fatalf("state of %d rooms", len(msg.State))
		}
		s.Close()
	}
}
