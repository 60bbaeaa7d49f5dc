package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
)

func TestNearAndFarPairs(t *testing.T) {
	// Bots on a line: slot 0 at x 0, 1 at 3, 2 at 20, 3 at 30, 4 at 100;
	// slot 5 has no bot placed.
	line := []floorPoint{{x: 0, ok: true}, {x: 3, ok: true}, {x: 20, ok: true}, {x: 30, ok: true}, {x: 100, ok: true}, {}}
	two := &codec.Interest{Radius: 5, Nearest: 2, FarEvery: 4, Cell: 4}
	tests := []struct {
		name   string
		in     *codec.Interest
		at     []floorPoint
		rx, tx int
		near   bool
	}{
		{"an avatar within the radius is near", two, line, 0, 1, true},
		{"one of the receiver's nearest is near however far", two, line, 0, 2, true},
		{"one beyond the radius and the nearest is far", two, line, 0, 3, false},
		{"the nearest are the receiver's own: the far one's nearest", two, line, 4, 3, true},
		{"and what is near one receiver may be far from the other", two, line, 4, 0, false},
		{"a bot not placed yet counts as near", two, line, 0, 5, true},
		{"a radius without nearest", &codec.Interest{Radius: 25}, line, 0, 2, true},
		{"a radius without nearest, beyond it", &codec.Interest{Radius: 25}, line, 0, 3, false},
		{"fewer bots than nearest are all near", &codec.Interest{Radius: 1, Nearest: 10}, line, 0, 4, true},
		{"without interest management every pair is near", nil, line, 0, 4, true},
		{"in a crowd in one cell the nearest are few", &codec.Interest{Radius: 0.5, Nearest: 2, Cell: 100},
			[]floorPoint{{x: 0, ok: true}, {x: 1, ok: true}, {x: 2, ok: true}, {x: 3, ok: true}}, 0, 3, false},
		{"in a crowd in one cell the nearest are near", &codec.Interest{Radius: 0.5, Nearest: 2, Cell: 100},
			[]floorPoint{{x: 0, ok: true}, {x: 1, ok: true}, {x: 2, ok: true}, {x: 3, ok: true}}, 0, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newFloorMap(tt.in, tt.at).near(tt.rx, tt.tx); got != tt.near {
				t.Errorf("near(%d, %d) = %v, want %v", tt.rx, tt.tx, got, tt.near)
			}
		})
	}
}

// The grid finds each bot's nearest as measuring every pair would, however
// the bots crowd.
func TestGridFindsTheNearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, spread := range []float64{0.5, 10, 60, 1000} {
		at := make([]floorPoint, 300)
		for s := range at {
			if s%7 == 3 {
				continue // an empty slot
			}
			at[s] = floorPoint{x: rng.Float64() * spread, z: rng.NormFloat64() * spread / 4, ok: true}
		}
		g := newFloorGrid(at, 4)
		for _, k := range []int{1, 24, 256, 400} {
			for s, p := range at {
				if !p.ok {
					continue
				}
				var all []float64
				for u, q := range at {
					if q.ok && u != s {
						all = append(all, (q.x-p.x)*(q.x-p.x)+(q.z-p.z)*(q.z-p.z))
					}
				}
				slices.Sort(all)
				want := math.Inf(1)
				if k <= len(all) {
					want = all[k-1]
				}
				if got, _ := g.kthNearest(s, k, nil); got != want {
					t.Fatalf("spread %g: slot %d's nearest #%d at %g² m, want %g²", spread, s, k, math.Sqrt(got), math.Sqrt(want))
				}
			}
		}
	}
}

func TestWalkStaysInItsArea(t *testing.T) {
	center := [3]float64{5, 2.1, -3} // as joined places a bot: 2 m above a spawn point at 0.1
	const side = 20.0
	start := time.Unix(1_800_000_000, 0)
	for seed := range uint64(8) {
		m := newMotion(center, seed, false, start)
		m.walk = newWalk(center, side, seed)
		twin := newMotion(center, seed, false, start)
		twin.walk = newWalk(center, side, seed)
		var quadrants [4]int
		var prev codec.Pose
		facing := 0
		const step, steps = 100 * time.Millisecond, 6000 // ten minutes
		for i := range steps {
			at := start.Add(time.Duration(i) * step)
			p := m.pose(at)
			pos := p.Head.Position
			if p != twin.pose(at) {
				t.Fatalf("seed %d: two walks of one seed part at %v", seed, at.Sub(start))
			}
			if math.Abs(pos[0]-center[0]) > side/2+0.01 || math.Abs(pos[2]-center[2]) > side/2+0.01 {
				t.Fatalf("seed %d: at %v the head is at %v, outside the %g m square around %v", seed, at.Sub(start), pos, side, center)
			}
			if math.Abs(pos[1]-1.7) > 0.03 {
				t.Fatalf("seed %d: the head is %.2f m high, want 1.6 m above the spawn point", seed, pos[1]-0.1)
			}
			q := 0
			if pos[0] > center[0] {
				q++
			}
			if pos[2] > center[2] {
				q += 2
			}
			quadrants[q]++
			if i > 0 {
				dx, dz := pos[0]-prev.Head.Position[0], pos[2]-prev.Head.Position[2]
				if v := math.Hypot(dx, dz) / step.Seconds(); v > 1.6 {
					t.Fatalf("seed %d: %.1f m/s is faster than walking", seed, v)
				}
				// Forward is -z turned by the head's rotation; the head
				// turns from the walking direction by at most 0.8 rad.
				fx, fz := forward(p.Head.Rotation)
				if dx*fx+dz*fz > math.Cos(0.85)*math.Hypot(dx, dz)*math.Hypot(fx, fz) {
					facing++
				}
			}
			prev = p
		}
		for q, n := range quadrants {
			if n < steps/20 {
				t.Errorf("seed %d: %d of %d poses in quadrant %d of the square: the walk does not cover it", seed, n, steps, q)
			}
		}
		if facing < steps*9/10 {
			t.Errorf("seed %d: the head faces its way in %d of %d steps", seed, facing, steps)
		}
	}
}

// forward returns the floor direction that the rotation q turns -z to.
func forward(q [4]float64) (x, z float64) {
	qx, qy, qz, qw := q[0], q[1], q[2], q[3]
	// The third column of q's rotation matrix, negated.
	return -2 * (qx*qz + qw*qy), -(1 - 2*(qx*qx+qy*qy))
}
