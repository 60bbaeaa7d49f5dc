package rooms

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/posecast/posecast/codec"
)

// Interest is how a room chooses the avatars each member gets at every
// tick: those near the member's own avatar at every tick, the others (far)
// every FarEvery ticks. The room sorts avatars into square cells of the
// floor and sends whole cells, so the records of a tick are encoded once
// for the room and members share them. A zero field takes its default
// (so Nearest is at least 1); Disabled turns interest management off.
type Interest struct {
	// Disabled sends every member every avatar at every tick.
	Disabled bool
	// Radius is the distance on the floor (x, z), in metres, within which
	// an avatar is near: every cell that reaches into it is near. Defaults
	// to 5.
	Radius float64
	// Nearest is how many of the nearest other avatars are near however
	// far they are. Defaults to 24.
	Nearest int
	// FarEvery is how many ticks apart a member gets the far avatars.
	// Defaults to 4.
	FarEvery int
	// Cell is the side of the cells, in metres. Defaults to half of Radius.
	Cell float64
	// Refresh is how often every avatar, moving or not, is sent again to
	// every member, so that a receiver that lost every copy of an avatar's
	// last move is put right even where it cannot tell. Defaults to 30s.
	Refresh time.Duration
	// FarMove and FarTurn are how far, in metres, and how much, in
	// degrees, a head or a hand must have moved or turned since far
	// members were last sent an avatar before they are sent it again: a
	// standing crowd whose heads sway is not sent at the far rate. They
	// default to 0.1 m and 10°.
	FarMove, FarTurn float64
}

// withDefaults fills in Interest's defaults, or says what makes no sense.
func (in Interest) withDefaults() (Interest, error) {
	if in.Radius == 0 {
		in.Radius = 5
	}
	if in.Nearest == 0 {
		in.Nearest = 24
	}
	if in.FarEvery == 0 {
		in.FarEvery = 4
	}
	if in.Cell == 0 {
		in.Cell = in.Radius / 2
	}
	if in.Refresh == 0 {
		in.Refresh = 30 * time.Second
	}
	if in.FarMove == 0 {
		in.FarMove = 0.1
	}
	if in.FarTurn == 0 {
		in.FarTurn = 10
	}
	switch {
	case !(in.Radius > 0 && in.Radius <= 1000):
		return in, fmt.Errorf("rooms: interest radius %v m not in (0, 1000]", in.Radius)
	case !(in.Cell >= 0.1 && in.Cell <= 1000):
		return in, fmt.Errorf("rooms: interest cell %v m not in [0.1, 1000]", in.Cell)
	case in.Nearest < 1 || in.Nearest > MaxRoomSize:
		return in, fmt.Errorf("rooms: interest nearest %d not in 1..%d", in.Nearest, MaxRoomSize)
	case in.FarEvery < 1 || in.FarEvery > 100:
		return in, fmt.Errorf("rooms: interest far_every %d not in 1..100", in.FarEvery)
	case in.Refresh < 0:
		return in, fmt.Errorf("rooms: negative interest refresh %v", in.Refresh)
	case !(in.FarMove > 0 && in.FarMove <= 100) || !(in.FarTurn > 0 && in.FarTurn <= 180):
		return in, fmt.Errorf("rooms: interest far move %v m or far turn %v° not in (0, 100] and (0, 180]", in.FarMove, in.FarTurn)
	}
	return in, nil
}

// interestRule is an Interest in the units the tick works in.
type interestRule struct {
	Interest
	radius2   int64   // squared radius, mm²
	cell      int64   // cell side, mm
	farEvery  uint64  // ticks
	farWindow uint64  // ticks after a change during which far members get it
	refresh   uint64  // ticks; a multiple of farEvery
	farMove2  int64   // squared FarMove, mm²
	farTurn   float64 // cosine of half FarTurn: |dot| of quaternions under it is a turn past it
}

// newInterestRule fills in's defaults, checks it and converts it for a
// registry of cfg.
func newInterestRule(in Interest, cfg *Config) (*interestRule, error) {
	in, err := in.withDefaults()
	if err != nil {
		return nil, err
	}
	radius := int64(math.Round(in.Radius * 1000))
	far := uint64(in.FarEvery)
	refresh := max(far, cfg.ticks(in.Refresh))
	return &interestRule{
		Interest:  in,
		radius2:   radius * radius,
		cell:      int64(math.Round(in.Cell * 1000)),
		farEvery:  far,
		farWindow: far * uint64(cfg.RepeatTicks+1),
		refresh:   refresh - refresh%far,
		farMove2:  int64(math.Round(in.FarMove*1000)) * int64(math.Round(in.FarMove*1000)),
		farTurn:   math.Cos(in.FarTurn * math.Pi / 360),
	}, nil
}

// wire returns the rule as joined describes it, or nil when disabled.
func (ir *interestRule) wire() *codec.Interest {
	if ir.Disabled {
		return nil
	}
	return &codec.Interest{Radius: ir.Radius, Nearest: ir.Nearest, FarEvery: ir.FarEvery, Cell: ir.Cell}
}

// SetInterest changes how the room chooses what each member gets (from the
// next tick; zero fields take their defaults). Members that join from now
// on are told of it in joined.
func (r *Room) SetInterest(in Interest) error {
	rule, err := newInterestRule(in, r.cfg)
	if err != nil {
		return err
	}
	r.interest.Store(rule)
	return nil
}

// Interest returns how the room chooses what each member gets, defaults
// filled in.
func (r *Room) Interest() Interest { return r.interest.Load().Interest }

// An avatar's class in a tick: what its record goes to. A cell's records
// lie in this order, so that near members get a run of them (nearOnly and
// near) and so do far ones (near and far).
const (
	toNearOnly = iota // to members that have its cell near: it moved, but little since far members got it
	toNear            // to every member that has its cell near, and far ones on their far tick
	toFar             // to members that have its cell far, on their far tick
	toNone
)

// occupant is an avatar in the tick's grid.
type occupant struct {
	x, z  int32 // cell
	class int8
	slot  int32
}

// gridCell is a cell of the tick's grid that holds avatars. Its records
// lie in the tick's buffer at start..end: near members get start..nearEnd,
// far ones farStart..end.
type gridCell struct {
	x, z                          int32
	first, last                   int // its occupants, in tickGrid.occupants
	start, farStart, nearEnd, end int
	mark                          uint64 // == tickGrid.stamp: in the near set being chosen
}

// span is a range of the tick's record buffer.
type span struct{ from, to int }

// tickGrid is the tick's sorting of avatars into cells and the encoding
// of their records. Only the tick goroutine uses it.
type tickGrid struct {
	occupants []occupant
	cells     []gridCell
	// The cell at given coordinates: in dense, row by row over the
	// cells' bounds, when they are not much more than the cells; in
	// index otherwise. -1 where no cell is.
	dense   []int32
	index   map[[2]int32]int32
	bounds  []int  // offsets of record starts in records, and its end
	records []byte // shared with members: made anew each tick
	// Arenas of the members' updates: made anew each tick.
	runs  [][]byte
	parts [][][]byte
	// The cells' bounds.
	minX, maxX, minZ, maxZ int32
	stamp                  uint64 // one per member's choice

	// Scratch for one member's choice.
	near  []int32
	cands []cellDistance
	best  smallest
	spans []span
	// sharedParts are the updates every member may get (shared).
	sharedParts map[sharedKey][][][]byte
}

type cellDistance struct {
	d2  int64
	idx int32
}

// floorDiv divides rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// build sorts the roster's avatars into cells and encodes the records the
// tick sends, cell by cell. With everyone, every member gets every cell
// at every tick and no far records are needed; without rule, the room is
// one cell and no avatar is sent again but for its repeats.
func (g *tickGrid) build(r *Room, ro *roster, tick uint64, rule *interestRule, everyone bool) {
	repeat := uint64(r.cfg.RepeatTicks)
	var cell int64
	var farWindow, refresh, farEvery uint64
	if rule != nil {
		cell, farWindow, refresh, farEvery = rule.cell, rule.farWindow, rule.refresh, rule.farEvery
	}
	g.occupants = g.occupants[:0]
	for _, slot := range ro.slots {
		st := &r.slotTicks[slot]
		if v := r.table.Version(slot); v != st.version {
			rec, v := r.table.Read(slot, st.rec[:0])
			st.version, st.changed, st.recLen = v, tick, len(rec)
			if v != 0 {
				st.x, st.z = headFloor(rec)
				if rule != nil && (st.farLen == 0 || farApart(rule, st.farRec[:st.farLen], rec)) {
					st.farChanged, st.farLen = tick, copy(st.farRec[:], rec)
				}
			}
		}
		if st.version == 0 {
			continue
		}
		near := tick-st.changed <= repeat || (refresh > 0 && (tick+uint64(slot))%refresh == 0)
		far := !everyone && (tick-st.farChanged <= farWindow || (tick+uint64(slot))%refresh < farEvery)
		class := int8(toNone)
		switch {
		case near && far:
			class = toNear
		case near:
			class = toNearOnly
		case far:
			class = toFar
		}
		o := occupant{class: class, slot: int32(slot)}
		if cell > 0 {
			o.x, o.z = int32(floorDiv(int64(st.x), cell)), int32(floorDiv(int64(st.z), cell))
		}
		g.occupants = append(g.occupants, o)
	}
	slices.SortFunc(g.occupants, func(a, b occupant) int {
		return cmp.Or(cmp.Compare(a.z, b.z), cmp.Compare(a.x, b.x), cmp.Compare(a.class, b.class), cmp.Compare(a.slot, b.slot))
	})

	g.cells = g.cells[:0]
	g.bounds = g.bounds[:0]
	sent := 0
	for _, o := range g.occupants {
		if o.class != toNone {
			sent++
		}
	}
	g.records = make([]byte, 0, sent*(codec.SlotSize+codec.MaxPoseSize))
	// As much as the last tick took, so that the arenas seldom grow.
	g.runs = make([][]byte, 0, max(4*len(ro.members), len(g.runs)+len(g.runs)/8))
	g.parts = make([][][]byte, 0, max(2*len(ro.members), len(g.parts)+len(g.parts)/8))
	clear(g.sharedParts)
	for i, o := range g.occupants {
		if i == 0 || o.x != g.occupants[i-1].x || o.z != g.occupants[i-1].z {
			at := len(g.records)
			g.cells = append(g.cells, gridCell{x: o.x, z: o.z, first: i, start: at, farStart: at, nearEnd: at})
		}
		c := &g.cells[len(g.cells)-1]
		c.last = i
		if i == 0 {
			g.minX, g.maxX, g.minZ, g.maxZ = o.x, o.x, o.z, o.z
		}
		g.minX, g.maxX = min(g.minX, o.x), max(g.maxX, o.x)
		g.minZ, g.maxZ = min(g.minZ, o.z), max(g.maxZ, o.z)
		if o.class != toNone {
			st := &r.slotTicks[o.slot]
			g.bounds = append(g.bounds, len(g.records))
			g.records = codec.AppendSlotRecord(g.records, uint16(o.slot), st.rec[:st.recLen])
			switch o.class {
			case toNearOnly:
				c.farStart, c.nearEnd = len(g.records), len(g.records)
			case toNear:
				c.nearEnd = len(g.records)
			}
		}
		c.end = len(g.records)
	}
	g.bounds = append(g.bounds, len(g.records))
	g.indexCells()
}

// indexCells makes the index of the cells by their coordinates.
func (g *tickGrid) indexCells() {
	g.dense, g.index = g.dense[:0], nil
	if len(g.cells) == 0 {
		return
	}
	width, height := int64(g.maxX-g.minX)+1, int64(g.maxZ-g.minZ)+1
	if width*height <= 8*int64(len(g.cells))+4096 {
		g.dense = slices.Grow(g.dense, int(width*height))[:width*height]
		for i := range g.dense {
			g.dense[i] = -1
		}
		for i, c := range g.cells {
			g.dense[int64(c.z-g.minZ)*width+int64(c.x-g.minX)] = int32(i)
		}
		return
	}
	g.index = make(map[[2]int32]int32, len(g.cells))
	for i, c := range g.cells {
		g.index[[2]int32{c.x, c.z}] = int32(i)
	}
}

// lookup returns the index of the cell at (x, z), if one holds avatars.
func (g *tickGrid) lookup(x, z int32) (int32, bool) {
	if g.index != nil {
		idx, ok := g.index[[2]int32{x, z}]
		return idx, ok
	}
	if x < g.minX || x > g.maxX || z < g.minZ || z > g.maxZ || len(g.dense) == 0 {
		return -1, false
	}
	idx := g.dense[int64(z-g.minZ)*(int64(g.maxX-g.minX)+1)+int64(x-g.minX)]
	return idx, idx >= 0
}

// farApart reports whether a pose record moved or turned enough since the
// one far members were last sent (at) for them to be sent it again: a head
// or hand moved FarMove or turned FarTurn, or a hand came or went. Both
// are checked records (codec.CheckPose).
func farApart(rule *interestRule, at, rec []byte) bool {
	if at[0] != rec[0] {
		return true // a hand came or went
	}
	const head = 5 // flags and time
	for off := head; off+codec.TransformSize <= len(rec); off += codec.TransformSize {
		var d2 int64
		for axis := range 3 {
			d := int64(int24(rec[off+3*axis:]) - int24(at[off+3*axis:]))
			d2 += d * d
		}
		if d2 >= rule.farMove2 {
			return true
		}
		p := codec.UnpackRotation(binary.LittleEndian.Uint32(at[off+9:]))
		q := codec.UnpackRotation(binary.LittleEndian.Uint32(rec[off+9:]))
		if math.Abs(p[0]*q[0]+p[1]*q[1]+p[2]*q[2]+p[3]*q[3]) < rule.farTurn {
			return true
		}
	}
	return false
}

// int24 reads a signed 24-bit little-endian integer.
func int24(b []byte) int32 { return int32(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16) << 8 >> 8 }

// headFloor returns the head's position on the floor, x and z in
// millimetres, from a pose record.
func headFloor(rec []byte) (x, z int32) {
	const head = 5 // flags and time
	return int24(rec[head:]), int24(rec[head+6:])
}

// shared returns an update every member with payloads of that many bytes
// may get: every cell's near records, or with far what far members get of
// every cell. It is built once a tick for each.
func (g *tickGrid) shared(payload int, far bool) [][][]byte {
	key := sharedKey{payload, far}
	if parts, ok := g.sharedParts[key]; ok {
		return parts
	}
	g.spans = g.spans[:0]
	for _, c := range g.cells {
		if far {
			g.spans = appendSpan(g.spans, span{c.farStart, c.end})
		} else {
			g.spans = appendSpan(g.spans, span{c.start, c.nearEnd})
		}
	}
	parts := g.pack(g.spans, payload)
	if g.sharedParts == nil {
		g.sharedParts = make(map[sharedKey][][][]byte)
	}
	g.sharedParts[key] = parts
	return parts
}

// sharedKey names an update of tickGrid.shared.
type sharedKey struct {
	payload int
	far     bool
}

// update returns what a member whose avatar stands in slot gets this tick,
// in datagrams of payloads of at most payload bytes: its near cells' near
// records and, on its far tick, what far members get of every cell (a
// cell near it now may hold an avatar still in its far window, sent while
// the cell was far).
func (g *tickGrid) update(r *Room, rule *interestRule, slot int, far bool, payload int) [][][]byte {
	if r.slotTicks[slot].version == 0 {
		return g.shared(payload, far)
	}
	near := g.nearCells(r, rule, slot)
	if len(near) == len(g.cells) && !far {
		return g.shared(payload, false)
	}
	var all [][][]byte
	if far {
		all = g.shared(payload, true) // before g.spans is filled: it uses them
	}
	g.spans = g.spans[:0]
	for _, idx := range near {
		c := &g.cells[idx]
		if far {
			// The near records far members do not get.
			g.spans = appendSpan(g.spans, span{c.start, c.farStart})
		} else {
			g.spans = appendSpan(g.spans, span{c.start, c.nearEnd})
		}
	}
	if !far {
		return g.pack(g.spans, payload)
	}
	if len(g.spans) == 0 {
		return all
	}
	own := g.pack(g.spans, payload)
	first := len(g.parts)
	g.parts = append(append(g.parts, all...), own...)
	return g.parts[first:len(g.parts):len(g.parts)]
}

// appendSpan appends s to spans, joined to the last one when they meet.
func appendSpan(spans []span, s span) []span {
	switch {
	case s.to <= s.from:
		return spans
	case len(spans) > 0 && spans[len(spans)-1].to == s.from:
		spans[len(spans)-1].to = s.to
		return spans
	}
	return append(spans, s)
}

// nearCells returns the indices, in order, of the cells near the avatar in
// slot: those that reach into the radius, and those that hold its Nearest
// nearest other avatars.
func (g *tickGrid) nearCells(r *Room, rule *interestRule, slot int) []int32 {
	g.stamp++ // 64 bits: never back to the 0 new cells are marked with
	st := &r.slotTicks[slot]
	px, pz := int64(st.x), int64(st.z)
	g.near = g.near[:0]
	// Avatars in the near cells, and others in cells wholly within the radius.
	count, within := 0, 0
	ownX, ownZ := int32(floorDiv(px, rule.cell)), int32(floorDiv(pz, rule.cell))
	consider := func(idx int32) {
		near, whole := g.distance2(idx, px, pz, rule.cell)
		if near > rule.radius2 {
			return
		}
		c := &g.cells[idx]
		c.mark = g.stamp
		g.near = append(g.near, idx)
		count += c.avatars()
		if whole <= rule.radius2 {
			within += c.avatars()
			if c.x == ownX && c.z == ownZ {
				within-- // the avatar itself
			}
		}
	}
	radius := int64(math.Sqrt(float64(rule.radius2)))
	// A cell whose edge lies at exactly the radius reaches into it.
	x0, x1 := floorDiv(px-radius-1, rule.cell), floorDiv(px+radius, rule.cell)
	z0, z1 := floorDiv(pz-radius-1, rule.cell), floorDiv(pz+radius, rule.cell)
	if (x1-x0+1)*(z1-z0+1) <= int64(len(g.cells)) {
		for z := z0; z <= z1; z++ {
			for x := x0; x <= x1; x++ {
				if idx, ok := g.lookup(int32(x), int32(z)); ok {
					consider(idx)
				}
			}
		}
	} else {
		for idx := range g.cells {
			consider(int32(idx))
		}
	}
	// When fewer than Nearest others are surely within the radius, the
	// nearest may lie in cells that do not reach into it.
	if within < rule.Nearest && count < len(g.occupants) {
		g.addNearest(r, rule, slot, ownX, ownZ)
	}
	slices.Sort(g.near)
	return g.near
}

// addNearest adds to the near cells those that hold avatars nearer than
// the Nearest-th nearest other avatar of the one in slot. It looks at the
// rings of cells around the avatar's own, nearest first, taking every
// cell until they hold Nearest others, then those nearer than the
// Nearest-th of them, and stops at the first ring that cannot hold a
// nearer one. A sparse grid, whose rings would cost more than its cells,
// is searched whole instead.
func (g *tickGrid) addNearest(r *Room, rule *interestRule, slot int, cx, cz int32) {
	st := &r.slotTicks[slot]
	px, pz := int64(st.x), int64(st.z)
	g.best.reset(rule.Nearest)
	for _, idx := range g.near {
		g.addDistances(r, idx, slot, px, pz)
	}
	looked := 0
	for k := int32(1); ; k++ {
		if reach := int64(k-1) * rule.cell; reach*reach >= g.best.nth() {
			return // no cell of this ring or beyond holds a nearer avatar
		}
		if cx-k < g.minX && cx+k > g.maxX && cz-k < g.minZ && cz+k > g.maxZ {
			return // past every cell
		}
		if looked += 8 * int(k); looked > len(g.cells) {
			g.addNearestOfAll(r, rule, slot)
			return
		}
		consider := func(x, z int32) {
			idx, ok := g.lookup(x, z)
			if !ok || g.cells[idx].mark == g.stamp {
				return
			}
			if d2, _ := g.distance2(idx, px, pz, rule.cell); d2 < g.best.nth() {
				g.cells[idx].mark = g.stamp
				g.near = append(g.near, idx)
				g.addDistances(r, idx, slot, px, pz)
			}
		}
		for x := cx - k; x <= cx+k; x++ {
			consider(x, cz-k)
			consider(x, cz+k)
		}
		for z := cz - k + 1; z < cz+k; z++ {
			consider(cx-k, z)
			consider(cx+k, z)
		}
	}
}

// addNearestOfAll is addNearest over every cell: cells in the order of
// their distance, each taken while it may hold one of the Nearest nearest.
func (g *tickGrid) addNearestOfAll(r *Room, rule *interestRule, slot int) {
	st := &r.slotTicks[slot]
	px, pz := int64(st.x), int64(st.z)
	g.cands = g.cands[:0]
	for idx := range g.cells {
		if g.cells[idx].mark != g.stamp {
			if d2, _ := g.distance2(int32(idx), px, pz, rule.cell); d2 < g.best.nth() {
				g.cands = append(g.cands, cellDistance{d2, int32(idx)})
			}
		}
	}
	slices.SortFunc(g.cands, func(a, b cellDistance) int { return cmp.Compare(a.d2, b.d2) })
	for _, c := range g.cands {
		if c.d2 >= g.best.nth() {
			return
		}
		g.near = append(g.near, c.idx)
		g.addDistances(r, c.idx, slot, px, pz)
	}
}

// addDistances offers g.best the squared distances from (px, pz) of the
// avatars of cell idx but the one in slot.
func (g *tickGrid) addDistances(r *Room, idx int32, slot int, px, pz int64) {
	c := &g.cells[idx]
	for _, o := range g.occupants[c.first : c.last+1] {
		if int(o.slot) != slot {
			ot := &r.slotTicks[o.slot]
			dx, dz := int64(ot.x)-px, int64(ot.z)-pz
			g.best.add(dx*dx + dz*dz)
		}
	}
}

// smallest keeps the n smallest (n at least 1) of the values it is given,
// in a max-heap.
type smallest struct {
	n    int
	heap []int64
}

// reset forgets every value, and keeps the n smallest from now on.
func (h *smallest) reset(n int) {
	h.n, h.heap = n, h.heap[:0]
}

// nth returns the n-th smallest value given so far, or MaxInt64 while
// fewer than n were given.
func (h *smallest) nth() int64 {
	if len(h.heap) < h.n {
		return math.MaxInt64
	}
	return h.heap[0]
}

// add offers v: it is kept while among the n smallest given.
func (h *smallest) add(v int64) {
	if len(h.heap) < h.n {
		h.heap = append(h.heap, v)
		for i := len(h.heap) - 1; i > 0; {
			p := (i - 1) / 2
			if h.heap[p] >= h.heap[i] {
				break
			}
			h.heap[p], h.heap[i] = h.heap[i], h.heap[p]
			i = p
		}
		return
	}
	if v >= h.heap[0] {
		return
	}
	h.heap[0] = v
	for i := 0; ; {
		big, l, r := i, 2*i+1, 2*i+2
		if l < len(h.heap) && h.heap[l] > h.heap[big] {
			big = l
		}
		if r < len(h.heap) && h.heap[r] > h.heap[big] {
			big = r
		}
		if big == i {
			return
		}
		h.heap[i], h.heap[big] = h.heap[big], h.heap[i]
		i = big
	}
}

// avatars returns how many avatars the cell holds.
func (c *gridCell) avatars() int { return c.last - c.first + 1 }

// distance2 returns the squared distances from (px, pz) to the nearest and
// the farthest point of cell idx, in mm².
func (g *tickGrid) distance2(idx int32, px, pz, cell int64) (near, far int64) {
	c := &g.cells[idx]
	axis := func(p, lo int64) (near, far int64) {
		hi := lo + cell
		switch {
		case p < lo:
			return lo - p, hi - p
		case p > hi:
			return p - hi, p - lo
		}
		return 0, max(p-lo, hi-p)
	}
	nx, fx := axis(px, int64(c.x)*cell)
	nz, fz := axis(pz, int64(c.z)*cell)
	return nx*nx + nz*nz, fx*fx + fz*fz
}

// pack cuts spans of the tick's records, at record boundaries, into runs
// that fill datagrams of payloads of at most payload bytes, and returns the
// datagrams. An update numbers at most 255 datagrams: MaxRoomSize records
// of at most 46 bytes, 21 to a payload of codec.MinDatagramSize, need 196.
func (g *tickGrid) pack(spans []span, payload int) [][][]byte {
	// Runs and parts are cut from arenas that only grow in a tick: what
	// members hold is never written again.
	firstPart, firstRun := len(g.parts), len(g.runs)
	closePart := func() {
		g.parts = append(g.parts, g.runs[firstRun:len(g.runs):len(g.runs)])
		firstRun = len(g.runs)
	}
	used := 0
	for _, s := range spans {
		for from := s.from; from < s.to; {
			cut := min(s.to, from+payload-used)
			if cut < s.to {
				// The last record boundary at or before cut.
				i, found := slices.BinarySearch(g.bounds, cut)
				if !found {
					cut = g.bounds[i-1]
				}
			}
			if cut <= from {
				closePart()
				used = 0
				continue
			}
			g.runs = append(g.runs, g.records[from:cut:cut])
			used += cut - from
			from = cut
		}
	}
	if used > 0 {
		closePart()
	}
	return g.parts[firstPart:len(g.parts):len(g.parts)]
}
