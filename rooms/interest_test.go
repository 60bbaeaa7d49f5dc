package rooms_test

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// crowd is a room's members standing at given places, who all move a
// millimetre every tick.
type crowd struct {
	w       *world
	members []*fakeMember
	ms      []*rooms.Membership
	at      [][2]float64
	moves   uint32
}

func newCrowd(t *testing.T, w *world, at [][2]float64) *crowd {
	c := &crowd{w: w, at: at}
	for i := range at {
		m := newMember(t, fmt.Sprintf("m%d", i))
		c.members = append(c.members, m)
		c.ms = append(c.ms, w.join("hall", fmt.Sprintf("u%d", i), m))
	}
	c.move()
	w.settle(c.members...)
	return c
}

// move moves everyone a millimetre, back and forth.
func (c *crowd) move() {
	c.moves++
	for i, m := range c.ms {
		x := c.at[i][0] + float64(c.moves%2)/1000
		if _, err := m.UpdatePose(pose(c.moves, x, 1.6, c.at[i][1])); err != nil {
			c.w.t.Fatal(err)
		}
	}
}

// run lets n ticks pass, everyone moving before each, and returns for each
// receiver the ticks (1..n) at which it got each other member, by index.
// It checks that every member's updates are numbered one after the other.
func (c *crowd) run(t *testing.T, n int) [][][]int {
	got := make([][][]int, len(c.members))
	for i := range got {
		got[i] = make([][]int, len(c.members))
	}
	bySlot := make(map[int]int)
	for i, m := range c.ms {
		bySlot[m.Slot()] = i
	}
	lastSeq := make([]uint32, len(c.members))
	for tick := 1; tick <= n; tick++ {
		c.move()
		c.w.ticks(1)
		for i, m := range c.members {
			seen := make(map[int]bool)
			for _, d := range m.takeDatagrams() {
				if d.Parts == 0 {
					continue
				}
				if d.Part == 0 {
					if lastSeq[i] != 0 && d.Seq != lastSeq[i]+1 {
						t.Errorf("%s: update %d after %d", m.name, d.Seq, lastSeq[i])
					}
					lastSeq[i] = d.Seq
				}
				for _, r := range d.records {
					if seen[r.slot] {
						t.Errorf("%s: slot %d twice in one update", m.name, r.slot)
					}
					seen[r.slot] = true
					got[i][bySlot[r.slot]] = append(got[i][bySlot[r.slot]], tick)
				}
			}
		}
	}
	return got
}

func everyTick(n int) []int {
	ticks := make([]int, n)
	for i := range ticks {
		ticks[i] = i + 1
	}
	return ticks
}

// isFarSchedule reports whether ticks are every far-th tick of 1..n.
func isFarSchedule(ticks []int, far, n int) bool {
	if len(ticks) != n/far {
		return false
	}
	for i := 1; i < len(ticks); i++ {
		if ticks[i]-ticks[i-1] != far {
			return false
		}
	}
	return true
}

func TestNearAvatarsComeEveryTickAndFarOnesEveryFarEvery(t *testing.T) {
	crowdAt := func(n int, x, z float64) [][2]float64 {
		var at [][2]float64
		for i := range n {
			at = append(at, [2]float64{x + float64(i%6)*0.15, z + float64(i/6)*0.15})
		}
		return at
	}
	tests := []struct {
		name     string
		interest rooms.Interest
		at       [][2]float64 // the receiver first
		near     []int        // whom the receiver gets at every tick
	}{{
		name:     "within the radius",
		interest: rooms.Interest{Radius: 5, Nearest: 1},
		at:       [][2]float64{{0, 0}, {3, 0}, {0, -4}, {12, 0}, {0, -30}},
		near:     []int{1, 2},
	}, {
		name:     "the nearest however far",
		interest: rooms.Interest{Radius: 5, Nearest: 2},
		at:       [][2]float64{{0, 0}, {20, 0}, {0, 35}, {60, 60}, {-70, 0}},
		near:     []int{1, 2},
	}, {
		name:     "those within the radius count among the nearest",
		interest: rooms.Interest{Radius: 5, Nearest: 2},
		at:       [][2]float64{{0, 0}, {1, 0}, {0, 2}, {30, 0}, {-70, 0}},
		near:     []int{1, 2},
	}, {
		name:     "a whole cell comes when one of its avatars is near",
		interest: rooms.Interest{Radius: 5, Nearest: 1, Cell: 10},
		at:       [][2]float64{{1, 1}, {40, 41}, {49, 49}, {-70, 0}},
		near:     []int{1, 2},
	}, {
		name:     "a crowd in one cell",
		interest: rooms.Interest{Radius: 5, Nearest: 24},
		at:       append([][2]float64{{50, 50}}, crowdAt(30, 0.1, 0.1)...),
		near:     everyTick(30),
	}, {
		name:     "no more avatars than the nearest and one: all near",
		interest: rooms.Interest{Radius: 1, Nearest: 3},
		at:       [][2]float64{{0, 0}, {100, 0}, {0, 100}, {-100, -100}},
		near:     []int{1, 2, 3},
	}}
	const ticks = 12
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Interest = tt.interest
			cfg.Interest.FarEvery = 4
			inBubble(t, cfg, nil, func(t *testing.T, w *world) {
				got := newCrowd(t, w, tt.at).run(t, ticks)[0]
				if !slices.Equal(got[0], everyTick(ticks)) {
					t.Errorf("the receiver got itself at ticks %v, want every tick", got[0])
				}
				for i := 1; i < len(tt.at); i++ {
					near := slices.Contains(tt.near, i)
					switch {
					case near && !slices.Equal(got[i], everyTick(ticks)):
						t.Errorf("near member %d at %v came at ticks %v, want every tick", i, tt.at[i], got[i])
					case !near && !isFarSchedule(got[i], 4, ticks):
						t.Errorf("far member %d at %v came at ticks %v, want every 4th", i, tt.at[i], got[i])
					}
				}
			})
		})
	}
}

func TestACrowdInOneCellIsEncodedOnce(t *testing.T) {
	cfg := testConfig()
	cfg.Interest = rooms.Interest{Radius: 2, Nearest: 4, Cell: 4}
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		var at [][2]float64
		for i := range 40 {
			at = append(at, [2]float64{0.5 + float64(i%8)*0.4, 0.5 + float64(i/8)*0.4})
		}
		at = append(at, [2]float64{100, 100}) // far from all: its cell is far for them
		c := newCrowd(t, w, at)
		c.move()
		w.ticks(1)
		var first []byte
		for i, m := range c.members[:40] {
			dgs := m.takeDatagrams()
			if len(dgs) != 1 || len(dgs[0].runs) == 0 {
				t.Fatalf("%s got %d datagrams, want 1", m.name, len(dgs))
			}
			d := dgs[0]
			if len(d.records) < 40 {
				t.Errorf("%s got %d records, want the crowd's 40", m.name, len(d.records))
			}
			if i == 0 {
				first = d.runs[0]
			} else if &d.runs[0][0] != &first[0] {
				t.Errorf("%s got the crowd encoded for itself", m.name)
			}
		}
	})
}

func TestTheNearestAreNearWhereverTheyStand(t *testing.T) {
	tests := []struct {
		name     string
		interest rooms.Interest
	}{
		{"cells of half the radius", rooms.Interest{Radius: 3, Nearest: 8}},
		{"cells wider than the radius", rooms.Interest{Radius: 3, Nearest: 8, Cell: 5}},
		{"small cells, many nearest", rooms.Interest{Radius: 1, Nearest: 30, Cell: 0.7}},
	}
	const users, ticks = 150, 8
	for seed, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 2))
			cfg := testConfig()
			cfg.MaxMembers = users
			cfg.Interest = tt.interest
			cfg.Interest.FarEvery = 4
			inBubble(t, cfg, nil, func(t *testing.T, w *world) {
				at := make([][2]float64, users)
				for i := range at {
					// Denser in one corner, sparse elsewhere.
					at[i] = [2]float64{40 * math.Pow(rng.Float64(), 2), 40 * math.Pow(rng.Float64(), 2)}
				}
				got := newCrowd(t, w, at).run(t, ticks)
				for r := range at {
					type other struct {
						i int
						d float64
					}
					var others []other
					for i := range at {
						if i != r {
							others = append(others, other{i, math.Hypot(at[i][0]-at[r][0], at[i][1]-at[r][1])})
						}
					}
					slices.SortFunc(others, func(a, b other) int { return cmp.Compare(a.d, b.d) })
					for k, o := range others {
						mustBeNear := k < tt.interest.Nearest || o.d < tt.interest.Radius-0.01
						switch {
						case mustBeNear && !slices.Equal(got[r][o.i], everyTick(ticks)):
							t.Errorf("receiver %d got member %d (%.2f m, %d-th nearest) at ticks %v, want every tick", r, o.i, o.d, k+1, got[r][o.i])
						case len(got[r][o.i]) < ticks/4:
							t.Errorf("receiver %d got member %d (%.2f m) at ticks %v, want at least every 4th", r, o.i, o.d, got[r][o.i])
						}
					}
				}
			})
		})
	}
}

func TestAStillAvatarIsSentAgainEveryRefresh(t *testing.T) {
	cfg := testConfig()
	cfg.Interest = rooms.Interest{Radius: 5, Nearest: 1, FarEvery: 2, Refresh: 2 * time.Second}
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		// 0 and 1 are near each other, 2 is far from both.
		c := newCrowd(t, w, [][2]float64{{0, 0}, {1, 0}, {50, 0}})
		w.ticks(20) // they stand still: their repeats are over
		for _, m := range c.members {
			m.clear()
		}
		bySlot := map[int]int{c.ms[0].Slot(): 0, c.ms[1].Slot(): 1, c.ms[2].Slot(): 2}
		const periods = 3
		refresh := int(cfg.Interest.Refresh / cfg.Tick)
		counts := [3][3]int{}
		for range periods * refresh {
			w.ticks(1)
			for r, m := range c.members {
				for _, d := range m.takeDatagrams() {
					for _, rec := range d.records {
						counts[r][bySlot[rec.slot]]++
					}
				}
			}
		}
		// A far member comes once a refresh, on the receiver's far tick; a
		// near one at its refresh tick, and again on the receiver's far tick
		// unless that is the same tick.
		far := map[[2]int]bool{{0, 2}: true, {1, 2}: true, {2, 0}: true}
		for r := range 3 {
			for o := range 3 {
				got := counts[r][o]
				if far[[2]int{r, o}] && got != periods || !far[[2]int{r, o}] && (got < periods || got > 2*periods) {
					t.Errorf("receiver %d got still member %d (far: %v) %d times in %d refreshes", r, o, far[[2]int{r, o}], got, periods)
				}
			}
		}
	})
}

func TestAResyncCarriesTheMembersOwnSeq(t *testing.T) {
	cfg := testConfig()
	cfg.Interest = rooms.Interest{Radius: 5, Nearest: 1, FarEvery: 4}
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		c := newCrowd(t, w, [][2]float64{{0, 0}, {1, 0}, {50, 0}})
		c.run(t, 6)
		late := newMember(t, "late") // its updates are numbered from 1
		c.members = append(c.members, late)
		c.ms = append(c.ms, w.join("hall", "late", late))
		c.at = append(c.at, [2]float64{2, 0})
		late.clear()
		last := make([]uint32, len(c.members))
		for range 3 {
			c.move()
			w.ticks(1)
			for i, m := range c.members {
				for _, d := range m.takeDatagrams() {
					last[i] = max(last[i], d.Seq)
				}
			}
		}
		if last[3] != 3 || last[0] <= last[3] {
			t.Fatalf("last updates %v; want the late member's third and more for the others", last)
		}
		for i, m := range c.members {
			m.clear()
			if err := c.ms[i].Resync(); err != nil {
				t.Fatal(err)
			}
			states := only[*codec.EntitiesState](m.takeFrames())
			if len(states) != 1 {
				t.Errorf("%s: resync gave %d states, want one", m.name, len(states))
			} else if states[0].Seq != last[i] {
				t.Errorf("%s: resync's state is of seq %d, want its last update's, %d", m.name, states[0].Seq, last[i])
			}
		}
	})
}

func TestARoomsInterestIsSetPerRoom(t *testing.T) {
	cfg := testConfig()
	cfg.Interest = rooms.Interest{Radius: 5, Nearest: 1, FarEvery: 4}
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		stop := w.reg.OnRoomStart(func(r *rooms.Room) {
			var in rooms.Interest
			switch r.ID() {
			case "hall":
				in = rooms.Interest{Radius: 2, Nearest: 1, FarEvery: 2}
			case "salon":
				in = rooms.Interest{Disabled: true}
			default:
				return
			}
			if err := r.SetInterest(in); err != nil {
				t.Error(err)
			}
		})
		defer stop()
		joinedOf := func(room string) *codec.Joined {
			m := newMember(t, "m-"+room)
			w.join(room, "u-"+room, m)
			joined := only[*codec.Joined](m.takeFrames())
			if len(joined) != 1 {
				t.Fatalf("%s: %d joined", room, len(joined))
			}
			return joined[0]
		}
		tests := []struct {
			room string
			want *codec.Interest
		}{
			{"lobby", &codec.Interest{Radius: 5, Nearest: 1, FarEvery: 4, Cell: 2.5}},
			{"hall", &codec.Interest{Radius: 2, Nearest: 1, FarEvery: 2, Cell: 1}},
			{"salon", nil},
		}
		for _, tt := range tests {
			got := joinedOf(tt.room).Interest
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("%s: joined.interest %+v, want %+v", tt.room, got, tt.want)
			}
		}
		// A room's interest changes from its next tick on.
		c := newCrowd(t, w, [][2]float64{{0, 0}, {50, 0}, {-50, 0}})
		if got := c.run(t, 4)[0][1]; !isFarSchedule(got, 2, 4) {
			t.Errorf("far member came at %v, want every other tick", got)
		}
		r := w.reg.Room("hall")
		if r == nil {
			t.Fatal("hall is not running")
		}
		if err := r.SetInterest(rooms.Interest{Radius: 100}); err != nil {
			t.Fatal(err)
		}
		if got := c.run(t, 4)[0][1]; !slices.Equal(got, everyTick(4)) {
			t.Errorf("member within the new radius came at %v, want every tick", got)
		}
		for _, bad := range []rooms.Interest{{Radius: -1}, {FarEvery: 1000}, {Cell: 0.01}, {Nearest: -2}} {
			if err := r.SetInterest(bad); err == nil {
				t.Errorf("SetInterest(%+v) took it", bad)
			}
		}
	})
}

// An avatar that stops while its cell is far from a member, and whose
// cell the member walks into once its repeats to near members are over,
// still reaches the member with its last pose, on the member's next far
// tick: whatever the ticks' phase.
func TestAMemberWalkingUpToAnAvatarThatStoppedGetsItsLastPose(t *testing.T) {
	for offset := range 8 {
		t.Run(fmt.Sprintf("stopping %d ticks in", offset), func(t *testing.T) {
			cfg := testConfig()
			cfg.Interest = rooms.Interest{Radius: 5, Nearest: 1, FarEvery: 8}
			inBubble(t, cfg, nil, func(t *testing.T, w *world) {
				// m walks, c stays beside m's start, a stops far from both.
				c := newCrowd(t, w, [][2]float64{{0, 0}, {1, 0}, {30, 0}})
				c.run(t, offset)
				last := pose(7, 30.123, 1.6, 0)
				if _, err := c.ms[2].UpdatePose(last); err != nil {
					t.Fatal(err)
				}
				aSlot := c.ms[2].Slot()
				var got []byte
				for tick := 1; tick <= 8*(w.cfg.RepeatTicks+1); tick++ {
					at := c.at[0]
					if tick > w.cfg.RepeatTicks+1 {
						at = [2]float64{29, 0} // beside a, once its near repeats are over
					}
					for i, x := range [][2]float64{at, c.at[1]} {
						if _, err := c.ms[i].UpdatePose(pose(uint32(100+tick), x[0]+float64(tick%2)/1000, 1.6, x[1])); err != nil {
							t.Fatal(err)
						}
					}
					w.ticks(1)
					for _, d := range c.members[0].takeDatagrams() {
						for _, r := range d.records {
							if r.slot == aSlot {
								got = r.rec
							}
						}
					}
				}
				if !bytes.Equal(got, last) {
					t.Errorf("the walker holds %x for the avatar that stopped, want its last pose %x", got, last)
				}
			})
		})
	}
}

// A far avatar whose head only sways is not sent at the far rate; one that
// steps or turns is, and near members get every sway.
func TestAFarAvatarIsSentWhenItMovesOrTurnsEnough(t *testing.T) {
	turned := func(time uint32, x float64, degrees float64) []byte {
		half := degrees * math.Pi / 360
		p := codec.Pose{Time: time, Head: codec.Transform{Position: [3]float64{x, 1.6, 0}, Rotation: [4]float64{0, math.Sin(half), 0, math.Cos(half)}}}
		return codec.AppendPose(nil, &p)
	}
	tests := []struct {
		name  string
		x     float64 // where the swayer goes
		turn  float64 // degrees it turns
		wantR bool    // whether the far receiver gets it again
	}{
		{"a sway", 30.02, 2, false},
		{"a step", 30.3, 0, true},
		{"a turn", 30, 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Interest = rooms.Interest{Radius: 5, Nearest: 1, FarEvery: 2, Refresh: time.Hour}
			inBubble(t, cfg, nil, func(t *testing.T, w *world) {
				// r and its neighbour, far from the swayer s and s's neighbour n.
				c := newCrowd(t, w, [][2]float64{{0, 0}, {1, 0}, {30, 0}, {31, 0}})
				sSlot := c.ms[2].Slot()
				count := func(ticks int, move func(tick int)) (r, n int, last []byte) {
					for tick := 1; tick <= ticks; tick++ {
						for i := range c.ms {
							if i != 2 {
								if _, err := c.ms[i].UpdatePose(pose(uint32(tick), c.at[i][0]+float64(tick%2)/1000, 1.6, c.at[i][1])); err != nil {
									t.Fatal(err)
								}
							}
						}
						move(tick)
						w.ticks(1)
						for i, to := range []*int{&r, nil, nil, &n} {
							for _, d := range c.members[i].takeDatagrams() {
								for _, rec := range d.records {
									if rec.slot == sSlot && to != nil {
										*to++
										if i == 0 {
											last = rec.rec
										}
									}
								}
							}
						}
					}
					return r, n, last
				}
				sway := func(x, turn float64) func(int) {
					return func(tick int) {
						if _, err := c.ms[2].UpdatePose(turned(uint32(1000+tick), x+float64(tick%2)*0.02, turn+float64(tick%2)*2)); err != nil {
							t.Fatal(err)
						}
					}
				}
				// Swaying at 30 m long enough for its far window to pass.
				count(12, sway(30, 0))
				r, n, _ := count(8, sway(30, 0))
				if r != 0 || n != 8 {
					t.Fatalf("swaying: the far receiver got it %d times, its near neighbour %d; want 0 and 8", r, n)
				}
				r, n, last := count(8, sway(tt.x, tt.turn))
				switch {
				case n != 8:
					t.Errorf("its near neighbour got it %d times in 8 ticks, want 8", n)
				case tt.wantR && r == 0:
					t.Errorf("the far receiver never got it")
				case !tt.wantR && r != 0:
					t.Errorf("the far receiver got it %d times", r)
				case tt.wantR:
					var p codec.Pose
					if err := codec.ParsePose(last, &p); err != nil || math.Abs(p.Head.Position[0]-tt.x) > 0.03 {
						t.Errorf("the far receiver holds %+v (%v), want x near %v", p.Head, err, tt.x)
					}
				}
			})
		})
	}
}
