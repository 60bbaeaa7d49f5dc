package codec

import (
	"errors"
	"math"
	"testing"
)

// maxRotationError is the largest angle, in radians, between a unit
// quaternion and its packed-then-unpacked form: 0.3°. The worst case measured
// over the walk below is about 0.0041 rad (0.23°).
const maxRotationError = 0.005

func angleBetween(a, b [4]float64) float64 {
	dot := math.Abs(a[0]*b[0] + a[1]*b[1] + a[2]*b[2] + a[3]*b[3])
	return 2 * math.Acos(math.Min(1, dot))
}

func normalize(q [4]float64) [4]float64 {
	n := math.Sqrt(q[0]*q[0] + q[1]*q[1] + q[2]*q[2] + q[3]*q[3])
	return [4]float64{q[0] / n, q[1] / n, q[2] / n, q[3] / n}
}

func TestRotationRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		q    [4]float64
	}{
		{"identity stays identity", [4]float64{0, 0, 0, 1}},
		{"negated identity is the same rotation", [4]float64{0, 0, 0, -1}},
		{"half turn about y", [4]float64{0, 1, 0, 0}},
		{"quarter turn about x", [4]float64{math.Sqrt2 / 2, 0, 0, math.Sqrt2 / 2}},
		{"equal components", [4]float64{0.5, -0.5, 0.5, -0.5}},
		{"unnormalized input is normalized", [4]float64{0, 0, 3, 4}},
		{"small tilt", normalize([4]float64{0.01, -0.02, 0.03, 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnpackRotation(PackRotation(tt.q))
			if a := angleBetween(got, normalize(tt.q)); a > maxRotationError {
				t.Errorf("unpacked %v from %v: %.5f rad apart, want <= %v", got, tt.q, a, maxRotationError)
			}
		})
	}
}

func TestRotationOfBadInputIsIdentity(t *testing.T) {
	for _, q := range [][4]float64{{0, 0, 0, 0}, {math.NaN(), 0, 0, 1}, {math.Inf(1), 0, 0, 0}} {
		if got := UnpackRotation(PackRotation(q)); angleBetween(got, [4]float64{0, 0, 0, 1}) > maxRotationError {
			t.Errorf("PackRotation(%v) unpacks to %v, want identity", q, got)
		}
	}
}

func TestRotationErrorOverManyRandomQuaternions(t *testing.T) {
	worst := 0.0
	// A deterministic walk over the sphere of quaternions.
	for i := range 20000 {
		f := float64(i)
		q := normalize([4]float64{math.Sin(f * 1.1), math.Cos(f * 0.7), math.Sin(f*0.3 + 1), math.Cos(f*1.9 + 2)})
		worst = math.Max(worst, angleBetween(UnpackRotation(PackRotation(q)), q))
	}
	if worst > maxRotationError {
		t.Errorf("worst rotation error %.5f rad, want <= %v", worst, maxRotationError)
	}
}

func TestEveryPackedRotationIsAUnitQuaternion(t *testing.T) {
	for _, packed := range []uint32{0, 0xffffffff, 0x3fffffff, 0x7fffffff, 0xbfffffff, 1 << 30, 0x12345678} {
		q := UnpackRotation(packed)
		n := q[0]*q[0] + q[1]*q[1] + q[2]*q[2] + q[3]*q[3]
		if math.Abs(n-1) > 1e-9 {
			t.Errorf("UnpackRotation(%#x) = %v, norm² %v", packed, q, n)
		}
	}
}

func TestPoseRoundTrip(t *testing.T) {
	head := Transform{Position: [3]float64{1.2345, 1.7, -3.0004}, Rotation: normalize([4]float64{0.1, 0.2, 0.3, 0.9})}
	left := Transform{Position: [3]float64{1.0, 1.2, -2.9}, Rotation: [4]float64{0, 0, 0, 1}}
	right := Transform{Position: [3]float64{-8000, 8388.6, 0}, Rotation: [4]float64{0, 1, 0, 0}}
	tests := []struct {
		name string
		pose Pose
		size int
	}{
		{"head only is 18 bytes", Pose{Time: 123456, Head: head}, 18},
		{"head and left hand", Pose{Time: 1, Head: head, HasLeft: true, Left: left}, 31},
		{"head and right hand", Pose{Time: 2, Head: head, HasRight: true, Right: right}, 31},
		{"head and both hands", Pose{Time: math.MaxUint32, Head: head, HasLeft: true, Left: left, HasRight: true, Right: right}, 44},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := AppendPose(nil, &tt.pose)
			if len(rec) != tt.size || tt.pose.Size() != tt.size {
				t.Fatalf("record is %d bytes, Size says %d, want %d", len(rec), tt.pose.Size(), tt.size)
			}
			var got Pose
			if err := ParsePose(rec, &got); err != nil {
				t.Fatal(err)
			}
			if got.Time != tt.pose.Time || got.HasLeft != tt.pose.HasLeft || got.HasRight != tt.pose.HasRight {
				t.Fatalf("got %+v, want %+v", got, tt.pose)
			}
			check := func(name string, got, want Transform) {
				for i := range 3 {
					if d := math.Abs(got.Position[i] - want.Position[i]); d > PositionUnit/2+1e-9 {
						t.Errorf("%s position[%d] = %v, want %v (±%v)", name, i, got.Position[i], want.Position[i], PositionUnit/2)
					}
				}
				if a := angleBetween(got.Rotation, want.Rotation); a > maxRotationError {
					t.Errorf("%s rotation %v, want %v", name, got.Rotation, want.Rotation)
				}
			}
			check("head", got.Head, tt.pose.Head)
			if tt.pose.HasLeft {
				check("left", got.Left, tt.pose.Left)
			}
			if tt.pose.HasRight {
				check("right", got.Right, tt.pose.Right)
			}
		})
	}
}

func TestPositionsClampAtTheLimit(t *testing.T) {
	p := Pose{Head: Transform{Position: [3]float64{1e9, -1e9, math.NaN()}, Rotation: Identity.Rotation}}
	var got Pose
	if err := ParsePose(AppendPose(nil, &p), &got); err != nil {
		t.Fatal(err)
	}
	want := [3]float64{PositionLimit, -PositionLimit, 0}
	for i := range 3 {
		if math.Abs(got.Head.Position[i]-want[i]) > 1e-6 {
			t.Errorf("position %v, want %v", got.Head.Position, want)
		}
	}
}

func TestCheckPoseRefusesBadRecords(t *testing.T) {
	good := AppendPose(nil, &Pose{Head: Identity})
	tests := []struct {
		name string
		rec  []byte
	}{
		{"empty", nil},
		{"one byte short", good[:len(good)-1]},
		{"one byte long", append(append([]byte{}, good...), 0)},
		{"unknown flag bit", append([]byte{0x04}, good[1:]...)},
		{"hand flag without the hand", append([]byte{FlagLeftHand}, good[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckPose(tt.rec); !errors.Is(err, ErrMalformed) {
				t.Errorf("CheckPose = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSamePlaceIgnoresTime(t *testing.T) {
	a := AppendPose(nil, &Pose{Time: 1, Head: Identity})
	b := AppendPose(nil, &Pose{Time: 2, Head: Identity})
	moved := AppendPose(nil, &Pose{Time: 2, Head: Transform{Position: [3]float64{0, 0.01, 0}, Rotation: Identity.Rotation}})
	if !SamePlace(a, b) {
		t.Error("poses that differ only in time are not the same place")
	}
	if SamePlace(a, moved) {
		t.Error("poses 1 cm apart are the same place")
	}
}

func TestAppendPoseDoesNotAllocate(t *testing.T) {
	p := Pose{Head: Identity, HasLeft: true, Left: Identity}
	buf := make([]byte, 0, 64)
	var got Pose
	allocs := testing.AllocsPerRun(100, func() {
		rec := AppendPose(buf[:0], &p)
		if err := ParsePose(rec, &got); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendPose+ParsePose: %v allocs, want 0", allocs)
	}
}

func BenchmarkPose(b *testing.B) {
	p := Pose{Time: 42, Head: Transform{Position: [3]float64{1, 1.7, 2}, Rotation: normalize([4]float64{0.1, 0.2, 0.3, 0.9})}}
	buf := make([]byte, 0, 64)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(p.Size()))
		for b.Loop() {
			buf = AppendPose(buf[:0], &p)
		}
	})
	rec := AppendPose(nil, &p)
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		var got Pose
		for b.Loop() {
			if err := ParsePose(rec, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}
