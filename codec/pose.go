package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Quantization of poses on the wire. Positions are signed 24-bit integers of
// PositionUnit metres per axis; rotations are unit quaternions packed as
// "smallest three" into 32 bits.
const (
	// PositionUnit is the size of one position step on the wire, in metres (1 mm).
	PositionUnit = 0.001
	// PositionLimit is the largest coordinate a pose can carry, in metres; larger
	// values are clamped to it.
	PositionLimit = float64(1<<23-1) * PositionUnit

	// TransformSize is the size of one transform on the wire: 3 × 3 bytes of
	// position and 4 bytes of rotation.
	TransformSize = 13
	// poseHeaderSize is the flags byte and the 32-bit sender timestamp.
	poseHeaderSize = 5
	// MinPoseSize is the size of a pose record with the head only.
	MinPoseSize = poseHeaderSize + TransformSize
	// MaxPoseSize is the size of a pose record with head and both hands.
	MaxPoseSize = poseHeaderSize + 3*TransformSize

	// rotationBits is the width of each of the three smallest quaternion
	// components. They use the odd number of levels 0..rotationSteps so that
	// zero, the most common value, is exact; the top level is unused.
	rotationBits  = 10
	rotationSteps = 1<<rotationBits - 2
)

// Pose record flags. Bits not named here must be zero.
const (
	FlagLeftHand  = 1 << 0
	FlagRightHand = 1 << 1
	flagsKnown    = FlagLeftHand | FlagRightHand
)

// Transform is a position in metres and a rotation as a unit quaternion
// (x, y, z, w), both in room coordinates (y up, as in WebXR).
type Transform struct {
	Position [3]float64
	Rotation [4]float64
}

// Pose is what a member sends many times a second: its head and, when tracked,
// its hands, stamped with the sender's clock.
type Pose struct {
	// Time is the sender's clock when the pose was sampled: the low 32 bits of
	// Unix time in milliseconds. Receivers use differences between a sender's
	// timestamps to interpolate; one clock on one machine gives latency.
	Time uint32
	Head Transform
	// HasLeft and HasRight say whether Left and Right hold tracked hands.
	HasLeft, HasRight bool
	Left, Right       Transform
}

// Identity is the transform at the origin with no rotation.
var Identity = Transform{Rotation: [4]float64{0, 0, 0, 1}}

// Size returns the size of p's record on the wire.
func (p *Pose) Size() int {
	n := MinPoseSize
	if p.HasLeft {
		n += TransformSize
	}
	if p.HasRight {
		n += TransformSize
	}
	return n
}

// AppendPose appends p's record to dst:
//
//	flags u8 | time u32 LE | head | left (if flag) | right (if flag)
//
// where each transform is x, y, z as int24 LE in millimetres followed by the
// packed rotation as u32 LE. It does not allocate when dst has room.
func AppendPose(dst []byte, p *Pose) []byte {
	var flags byte
	if p.HasLeft {
		flags |= FlagLeftHand
	}
	if p.HasRight {
		flags |= FlagRightHand
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint32(dst, p.Time)
	dst = appendTransform(dst, &p.Head)
	if p.HasLeft {
		dst = appendTransform(dst, &p.Left)
	}
	if p.HasRight {
		dst = appendTransform(dst, &p.Right)
	}
	return dst
}

// PoseRecordSize validates the flags byte at the start of a pose record and
// returns the size the record must have.
func PoseRecordSize(flags byte) (int, error) {
	if flags&^flagsKnown != 0 {
		return 0, fmt.Errorf("%w: pose flags %#02x", ErrMalformed, flags)
	}
	n := MinPoseSize
	if flags&FlagLeftHand != 0 {
		n += TransformSize
	}
	if flags&FlagRightHand != 0 {
		n += TransformSize
	}
	return n, nil
}

// CheckPose reports whether rec is exactly one well-formed pose record.
func CheckPose(rec []byte) error {
	if len(rec) < MinPoseSize {
		return fmt.Errorf("%w: pose record of %d bytes", ErrMalformed, len(rec))
	}
	n, err := PoseRecordSize(rec[0])
	if err != nil {
		return err
	}
	if len(rec) != n {
		return fmt.Errorf("%w: pose record of %d bytes, flags want %d", ErrMalformed, len(rec), n)
	}
	return nil
}

// ParsePose decodes one pose record. It does not allocate.
func ParsePose(rec []byte, p *Pose) error {
	if err := CheckPose(rec); err != nil {
		return err
	}
	flags := rec[0]
	p.Time = binary.LittleEndian.Uint32(rec[1:5])
	rest := rec[poseHeaderSize:]
	rest = parseTransform(rest, &p.Head)
	p.HasLeft = flags&FlagLeftHand != 0
	p.HasRight = flags&FlagRightHand != 0
	p.Left, p.Right = Transform{}, Transform{}
	if p.HasLeft {
		rest = parseTransform(rest, &p.Left)
	}
	if p.HasRight {
		parseTransform(rest, &p.Right)
	}
	return nil
}

// SamePlace reports whether two pose records put the avatar in the same place:
// equal except for their timestamps.
func SamePlace(a, b []byte) bool {
	if len(a) != len(b) || len(a) < poseHeaderSize {
		return false
	}
	return a[0] == b[0] && string(a[poseHeaderSize:]) == string(b[poseHeaderSize:])
}

// PoseTime returns the sender timestamp of a checked pose record.
func PoseTime(rec []byte) uint32 {
	return binary.LittleEndian.Uint32(rec[1:5])
}

func appendTransform(dst []byte, t *Transform) []byte {
	for _, v := range t.Position {
		q := quantizePosition(v)
		dst = append(dst, byte(q), byte(q>>8), byte(q>>16))
	}
	return binary.LittleEndian.AppendUint32(dst, PackRotation(t.Rotation))
}

func parseTransform(b []byte, t *Transform) []byte {
	for i := range t.Position {
		q := int32(uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16) << 8 >> 8 // sign-extend 24 bits
		// −2²³ is the one value with no positive twin; read it as the limit.
		q = max(q, -(1<<23 - 1))
		t.Position[i] = float64(q) * PositionUnit
		b = b[3:]
	}
	t.Rotation = UnpackRotation(binary.LittleEndian.Uint32(b))
	return b[4:]
}

func quantizePosition(v float64) int32 {
	if math.IsNaN(v) {
		return 0
	}
	v = math.Max(-PositionLimit, math.Min(PositionLimit, v))
	return int32(math.Round(v / PositionUnit))
}

// PackRotation packs a quaternion (x, y, z, w) as "smallest three": the index
// of the largest component in bits 30–31, and the other three, in index order,
// as 10-bit unsigned steps of √2/1022 over [−1/√2, 1/√2] (511 is zero) in
// bits 20–29, 10–19 and 0–9.
// The quaternion is normalized first; a zero or non-finite one packs as the
// identity. The largest component is made positive (q and −q are the same
// rotation), so it is implied.
func PackRotation(q [4]float64) uint32 {
	n := math.Sqrt(q[0]*q[0] + q[1]*q[1] + q[2]*q[2] + q[3]*q[3])
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		q, n = [4]float64{0, 0, 0, 1}, 1
	}
	largest := 0
	for i := 1; i < 4; i++ {
		if math.Abs(q[i]) > math.Abs(q[largest]) {
			largest = i
		}
	}
	sign := 1 / n
	if q[largest] < 0 {
		sign = -sign
	}
	packed := uint32(largest) << 30
	shift := 20
	for i := range 4 {
		if i == largest {
			continue
		}
		v := q[i] * sign * math.Sqrt2 // now in [−1, 1]
		step := math.Round((v + 1) / 2 * rotationSteps)
		step = math.Max(0, math.Min(rotationSteps, step))
		packed |= uint32(step) << shift
		shift -= rotationBits
	}
	return packed
}

// UnpackRotation reverses PackRotation. Every 32-bit value decodes to a unit
// quaternion.
func UnpackRotation(packed uint32) [4]float64 {
	var q [4]float64
	largest := int(packed >> 30)
	shift := 20
	sum := 0.0
	for i := range 4 {
		if i == largest {
			continue
		}
		step := float64(min(packed>>shift&(1<<rotationBits-1), rotationSteps))
		q[i] = (step/rotationSteps*2 - 1) / math.Sqrt2
		sum += q[i] * q[i]
		shift -= rotationBits
	}
	if sum > 1 {
		// Three steps near ±1/√2 overshoot the unit sphere; scale them back.
		s := 1 / math.Sqrt(sum)
		for i := range q {
			q[i] *= s
		}
		sum = 1
	}
	q[largest] = math.Sqrt(1 - sum)
	return q
}
