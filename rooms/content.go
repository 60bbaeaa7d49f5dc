package rooms

import (
	"math"
	"math/rand/v2"

	"github.com/posecast/posecast/codec"
)

// Component names of the generated room content.
const (
	ComponentSpawnPoint = "spawn_point"
	ComponentObstacle   = "obstacle"
	ComponentPosition   = "position"
)

// GenerateContent returns the entities of a new room: one spawn point at
// [x, 0.1, z] with x and z in −10..10, and three to six box obstacles kept
// clear of it.
func GenerateContent() map[string]Components {
	round := func(v float64) float64 { return math.Round(v*100) / 100 }
	sx, sz := round(rand.Float64()*20-10), round(rand.Float64()*20-10)
	out := map[string]Components{
		newID("e"): {ComponentSpawnPoint: true, ComponentPosition: []any{sx, 0.1, sz}},
	}
	for n := 3 + rand.IntN(4); n > 0; {
		x, z := round(rand.Float64()*24-12), round(rand.Float64()*24-12)
		if math.Hypot(x-sx, z-sz) < 3 {
			continue // keep the spawn point clear
		}
		w, h, d := round(0.5+rand.Float64()*1.5), round(0.5+rand.Float64()*2), round(0.5+rand.Float64()*1.5)
		out[newID("e")] = Components{
			ComponentObstacle: map[string]any{"shape": "box", "size": []any{w, h, d}},
			ComponentPosition: []any{x, round(h / 2), z},
		}
		n--
	}
	return out
}

// placement returns where a joiner starts: near the spawn point, a random
// −1..1 off on x and z, 2 m up for the head.
func placement(spawn [3]float64) codec.Pose {
	return codec.Pose{Head: codec.Transform{
		Position: [3]float64{spawn[0] + rand.Float64()*2 - 1, spawn[1] + 2, spawn[2] + rand.Float64()*2 - 1},
		Rotation: codec.Identity.Rotation,
	}}
}

// vec3 reads a 3-vector component value as decoded from msgpack or JSON.
func vec3(v any) ([3]float64, bool) {
	var out [3]float64
	switch v := v.(type) {
	case []any:
		if len(v) != 3 {
			return out, false
		}
		for i, e := range v {
			f, ok := number(e)
			if !ok {
				return out, false
			}
			out[i] = f
		}
		return out, true
	case []float64:
		if len(v) != 3 {
			return out, false
		}
		copy(out[:], v)
		return out, true
	}
	return out, false
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}
