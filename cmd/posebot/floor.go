package main

import (
	"math"
	"slices"

	"github.com/posecast/posecast/codec"
)

// floorPoint is where a bot stands on the floor (x, z), in metres.
type floorPoint struct {
	x, z float64
	ok   bool // false: no bot placed in this slot
}

// floorMap is where a room's bots stood at one moment, by slot, and how far
// from each the avatars near it reach: what a room with interest management
// sends a member at every tick. A nil *floorMap is a room without it, where
// every pair is near. It is made a few times a second and read without a
// lock, so it is never changed once made.
type floorMap struct {
	at []floorPoint
	// reach is, by slot, the squared floor distance within which an avatar
	// is near that receiver: the room's radius, or the distance to its
	// Nearest-th nearest bot when that is further.
	reach []float64
}

// newFloorMap maps the bots at (by slot) for a room with interest in. It
// returns nil for a room without interest management.
func newFloorMap(in *codec.Interest, at []floorPoint) *floorMap {
	if in == nil {
		return nil
	}
	m := &floorMap{at: at, reach: make([]float64, len(at))}
	g := newFloorGrid(at, cellSide(in))
	var buf []float64
	for s, p := range at {
		if !p.ok {
			continue
		}
		m.reach[s] = in.Radius * in.Radius
		if in.Nearest > 0 {
			var kth float64
			kth, buf = g.kthNearest(s, in.Nearest, buf)
			m.reach[s] = max(m.reach[s], kth)
		}
	}
	return m
}

// cellSide is the side of the cells the nearest are looked for in: the
// room's own cells, else its radius.
func cellSide(in *codec.Interest) float64 {
	switch {
	case in.Cell > 0:
		return in.Cell
	case in.Radius > 0:
		return in.Radius
	}
	return 4
}

// near reports whether the avatar in slot tx is near the receiver in slot
// rx: within the room's radius on the floor, or among the receiver's
// nearest. A slot off the map (a bot not placed yet) counts as near.
func (m *floorMap) near(rx, tx int) bool {
	if m == nil || rx < 0 || tx < 0 || rx >= len(m.at) || tx >= len(m.at) {
		return true
	}
	a, b := m.at[rx], m.at[tx]
	if !a.ok || !b.ok {
		return true
	}
	dx, dz := a.x-b.x, a.z-b.z
	return dx*dx+dz*dz <= m.reach[rx]
}

// floorGrid sorts points into square cells, so that a point's nearest are
// found among the cells around it rather than among all points.
type floorGrid struct {
	at         []floorPoint
	side       float64
	minX, minZ float64
	cols, rows int
	start      []int32 // cell c's points are slots[start[c]:start[c+1]]
	slots      []int32
}

// newFloorGrid sorts the placed points of at into cells of side metres, or
// wider ones where few points spread far.
func newFloorGrid(at []floorPoint, side float64) *floorGrid {
	g := &floorGrid{at: at}
	n := 0
	minX, minZ, maxX, maxZ := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range at {
		if p.ok {
			n++
			minX, maxX = min(minX, p.x), max(maxX, p.x)
			minZ, maxZ = min(minZ, p.z), max(maxZ, p.z)
		}
	}
	if n == 0 {
		return g
	}
	// A few cells a point at most.
	span := max(maxX-minX, maxZ-minZ)
	g.side = max(side, span/math.Sqrt(float64(4*n+64)))
	g.minX, g.minZ = minX, minZ
	g.cols, g.rows = int((maxX-minX)/g.side)+1, int((maxZ-minZ)/g.side)+1
	g.start = make([]int32, g.cols*g.rows+1)
	for _, p := range at {
		if p.ok {
			g.start[g.cell(p)+1]++
		}
	}
	for c := 1; c < len(g.start); c++ {
		g.start[c] += g.start[c-1]
	}
	fill := slices.Clone(g.start)
	g.slots = make([]int32, n)
	for s, p := range at {
		if p.ok {
			c := g.cell(p)
			g.slots[fill[c]] = int32(s)
			fill[c]++
		}
	}
	return g
}

// column and row return a point's cell coordinates.
func (g *floorGrid) column(p floorPoint) int { return min(g.cols-1, int((p.x-g.minX)/g.side)) }
func (g *floorGrid) row(p floorPoint) int    { return min(g.rows-1, int((p.z-g.minZ)/g.side)) }

func (g *floorGrid) cell(p floorPoint) int { return g.row(p)*g.cols + g.column(p) }

// kthNearest returns the squared floor distance from the point in slot s to
// its k-th nearest other point, or +Inf when there are fewer than k others.
// It looks ring by ring of cells around the point's own and stops once the
// k-th nearest found is closer than any point of the rings not yet looked
// at can be. buf is scratch space, returned for reuse.
func (g *floorGrid) kthNearest(s, k int, buf []float64) (float64, []float64) {
	p := g.at[s]
	cx, cz := g.column(p), g.row(p)
	buf = buf[:0]
	add := func(i, j int) {
		if i < 0 || j < 0 || i >= g.cols || j >= g.rows {
			return
		}
		c := j*g.cols + i
		for _, t := range g.slots[g.start[c]:g.start[c+1]] {
			if int(t) != s {
				q := g.at[t]
				buf = append(buf, (q.x-p.x)*(q.x-p.x)+(q.z-p.z)*(q.z-p.z))
			}
		}
	}
	for d := 0; d <= max(g.cols, g.rows); d++ {
		for i := cx - d; i <= cx+d; i++ { // the ring's top and bottom rows
			add(i, cz-d)
			if d > 0 {
				add(i, cz+d)
			}
		}
		for j := cz - d + 1; j < cz+d; j++ { // and its sides between them
			add(cx-d, j)
			add(cx+d, j)
		}
		if len(buf) >= k {
			slices.Sort(buf)
			buf = buf[:k]
			// A point beyond ring d is at least d cells away.
			if reach := float64(d) * g.side; buf[k-1] <= reach*reach {
				return buf[k-1], buf
			}
		}
	}
	if len(buf) < k {
		return math.Inf(1), buf
	}
	return buf[k-1], buf
}
