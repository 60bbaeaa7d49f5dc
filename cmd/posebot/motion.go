package main

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/posecast/posecast/codec"
)

// motion moves a bot the way a person in a headset does: walking a slow
// circle around where it was placed, turning its head, with a little
// tracking jitter, so that its avatar changes every tick.
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
	a := m.phase + m.speed*s
	jitter := func() float64 { return (m.rng.Float64() - 0.5) * 0.004 } // ±2 mm
	x := m.center[0] + m.radius*(math.Cos(a)-math.Cos(m.phase)) + jitter()
	z := m.center[2] + m.radius*(math.Sin(a)-math.Sin(m.phase)) + jitter()
	y := m.center[1] - 0.3 + 0.02*math.Sin(4*s) + jitter() // a head, bobbing as it walks
	yaw := -a + m.lookAmp*math.Sin(m.lookFreq*s)
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
