package main

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/posecast/posecast/codec"
)

// motion moves a bot the way a person in a headset does: walking a slow
// circle around where it was placed (or, with a walk, across the floor),
// turning its head, with a little tracking jitter, so that its avatar
// changes every tick.
type motion struct {
	center   [3]float64
	radius   float64 // metres
	speed    float64 // radians per second around the circle
	phase    float64
	lookFreq float64 // head turns per second, radians
	lookAmp  float64 // how far the head turns from the walking direction
	hands    bool
	rng      *rand.Rand
	start    time.Time
	walk     *walk // nil: circling
}

func newMotion(center [3]float64, seed uint64, hands bool, start time.Time) *motion {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &motion{
		center:   center,
		radius:   1 + rng.Float64()*2,
		speed:    0.2 + rng.Float64()*0.3,
		phase:    rng.Float64() * 2 * math.Pi,
		lookFreq: 0.5 + rng.Float64(),
		lookAmp:  0.3 + rng.Float64()*0.5,
		hands:    hands,
		rng:      rng,
		start:    start,
	}
}

// pose returns the bot's pose at t, stamped with t.
func (m *motion) pose(t time.Time) codec.Pose {
	s := t.Sub(m.start).Seconds()
	var x, z, y, heading float64
	if m.walk != nil {
		x, z, heading = m.walk.at(s)
		y = m.walk.head
	} else {
		a := m.phase + m.speed*s
		x = m.center[0] + m.radius*(math.Cos(a)-math.Cos(m.phase))
		z = m.center[2] + m.radius*(math.Sin(a)-math.Sin(m.phase))
		y = m.center[1] - 0.3
		heading = -a
	}
	jitter := func() float64 { return (m.rng.Float64() - 0.5) * 0.004 } // ±2 mm
	x, z = x+jitter(), z+jitter()
	y += 0.02*math.Sin(4*s) + jitter() // a head, bobbing as it walks
	yaw := heading + m.lookAmp*math.Sin(m.lookFreq*s)
	pitch := 0.1 * math.Sin(0.7*s)
	head := codec.Transform{Position: [3]float64{x, y, z}, Rotation: yawPitch(yaw, pitch)}
	p := codec.Pose{Time: uint32(t.UnixMilli()), Head: head}
	if m.hands {
		swing := 0.15 * math.Sin(2*s)
		p.HasLeft, p.Left = true, hand(head, yaw, -0.2, swing)
		p.HasRight, p.Right = true, hand(head, yaw, 0.2, -swing)
	}
	return p
}

// hand places a hand beside and below the head, swinging forward and back.
func hand(head codec.Transform, yaw, side, swing float64) codec.Transform {
	sin, cos := math.Sincos(yaw)
	dx, dz := side, -0.2+swing // in the head's frame: x right, -z forward
	return codec.Transform{
		Position: [3]float64{head.Position[0] + dx*cos + dz*sin, head.Position[1] - 0.5, head.Position[2] - dx*sin + dz*cos},
		Rotation: yawPitch(yaw, -0.5),
	}
}

// yawPitch returns the quaternion (x, y, z, w) of a turn by yaw about y
// followed by pitch about x.
func yawPitch(yaw, pitch float64) [4]float64 {
	sy, cy := math.Sincos(yaw / 2)
	sp, cp := math.Sincos(pitch / 2)
	return [4]float64{cy * sp, sy * cp, -sy * sp, cy * cp}
}

// walk is a person crossing a square of the floor from one random waypoint
// to the next at a steady walking pace of their own. The waypoints come
// from a random source of the walk's own, so that the path depends on the
// seed alone. Only the bot's goroutine uses it.
type walk struct {
	minX, minZ, side float64
	head             float64 // the head's height
	pace             float64 // metres a second
	rng              *rand.Rand
	from, to         [2]float64 // x, z
	left, arrives    float64    // seconds since the start
}

// newWalk returns a walk in the square of side metres centred on center,
// where the room places its joiners (2 m above its spawn point), with the
// head 1.6 m above the spawn point. It starts at a random waypoint.
func newWalk(center [3]float64, side float64, seed uint64) *walk {
	w := &walk{
		minX: center[0] - side/2,
		minZ: center[2] - side/2,
		side: side,
		head: center[1] - 2 + 1.6,
		rng:  rand.New(rand.NewPCG(seed, seed^0x632be59bd9b4e019)),
	}
	w.pace = 1.1 + w.rng.Float64()*0.4
	w.to = w.waypoint()
	w.next()
	return w
}

// waypoint returns a random point of the square.
func (w *walk) waypoint() [2]float64 {
	return [2]float64{w.minX + w.rng.Float64()*w.side, w.minZ + w.rng.Float64()*w.side}
}

// next sets off from the waypoint reached to a new one.
func (w *walk) next() {
	w.from, w.to, w.left = w.to, w.waypoint(), w.arrives
	d := math.Hypot(w.to[0]-w.from[0], w.to[1]-w.from[1])
	w.arrives = w.left + max(d, 0.01)/w.pace
}

// at returns where the walker is at s seconds from the start, on the floor,
// and the yaw that faces its way. s must not go back in time.
func (w *walk) at(s float64) (x, z, yaw float64) {
	for s >= w.arrives {
		w.next()
	}
	f := max(0, (s-w.left)/(w.arrives-w.left))
	dx, dz := w.to[0]-w.from[0], w.to[1]-w.from[1]
	// A yaw of θ turns the head's forward, -z, to (-sin θ, -cos θ).
	return w.from[0] + f*dx, w.from[1] + f*dz, math.Atan2(-dx, -dz)
}
