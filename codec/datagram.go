package codec

import (
	"encoding/binary"
	"fmt"
)

// Datagram kinds: the first element of every datagram's msgpack array.
const (
	// DatagramPose is a client's own pose: [1, bin(pose record)].
	DatagramPose = 1
	// DatagramPoses is the server's pose update for a room: [2, seq, part, parts, bin(records)].
	DatagramPoses = 2
	// DatagramPing is echoed back unchanged by the server: [3, payload].
	DatagramPing = 3
)

// Datagram size limits.
const (
	// MaxDatagramSize is the largest datagram posecast sends. Chrome's
	// WebTransport allows 1215 bytes, and quic-go 1242 before path MTU
	// discovery, so 1200 fits both everywhere.
	MaxDatagramSize = 1200
	// MinDatagramSize is the smallest datagram limit posecast honours. QUIC
	// guarantees 1200-byte packets, which leaves room for datagrams of this
	// size after QUIC and HTTP/3 framing on any path.
	MinDatagramSize = 1000
	// MaxPingSize is the largest ping datagram the server echoes.
	MaxPingSize = 64

	// SlotSize is the size of the slot number in front of each record of a pose update.
	SlotSize = 2
	// PosesHeaderSize is the size of a pose update's header: array, kind, seq,
	// part, parts and the bin16 header of the records.
	PosesHeaderSize = 1 + 1 + 5 + 2 + 2 + 3
)

// msgpack type bytes used by the hand-written datagram codec.
const (
	mpFixArray2 = 0x92
	mpFixArray5 = 0x95
	mpBin8      = 0xc4
	mpBin16     = 0xc5
	mpUint8     = 0xcc
	mpUint16    = 0xcd
	mpUint32    = 0xce
)

// AppendPoseDatagram appends a client's pose datagram, [1, bin8(record)], to dst.
func AppendPoseDatagram(dst []byte, p *Pose) []byte {
	dst = append(dst, mpFixArray2, DatagramPose, mpBin8, byte(p.Size()))
	return AppendPose(dst, p)
}

// DatagramKind returns the kind of a datagram: the first element of its array.
func DatagramKind(b []byte) (int, error) {
	if len(b) < 2 || b[0]&0xf0 != 0x90 {
		return 0, fmt.Errorf("%w: datagram is not a msgpack array", ErrMalformed)
	}
	if b[1] > 0x7f {
		return 0, fmt.Errorf("%w: datagram kind %#02x", ErrMalformed, b[1])
	}
	return int(b[1]), nil
}

// ParsePoseDatagram checks a client's pose datagram and returns its pose
// record, a slice of b. It does not allocate.
func ParsePoseDatagram(b []byte) ([]byte, error) {
	if len(b) < 4 || b[0] != mpFixArray2 || b[1] != DatagramPose || b[2] != mpBin8 {
		return nil, fmt.Errorf("%w: pose datagram header", ErrMalformed)
	}
	rec := b[4:]
	if int(b[3]) != len(rec) {
		return nil, fmt.Errorf("%w: pose datagram declares %d bytes, carries %d", ErrMalformed, b[3], len(rec))
	}
	if err := CheckPose(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// CheckPingDatagram checks that b is a ping datagram the server may echo:
// a two-element array of kind 3 whose payload is one msgpack value, at most
// MaxPingSize bytes in all.
func CheckPingDatagram(b []byte) error {
	if len(b) > MaxPingSize {
		return fmt.Errorf("%w: ping of %d bytes", ErrTooLarge, len(b))
	}
	if len(b) < 3 || b[0] != mpFixArray2 || b[1] != DatagramPing {
		return fmt.Errorf("%w: ping datagram header", ErrMalformed)
	}
	return CheckValue(b[2:], 2)
}

// PoseUpdate is the header of a server's pose update datagram.
type PoseUpdate struct {
	// Seq numbers the room's ticks that carried poses. It grows by one for each
	// such tick; a heartbeat repeats the latest.
	Seq uint32
	// Part and Parts say which of the tick's datagrams this is. Parts is zero
	// for a heartbeat, which carries no records.
	Part, Parts uint8
	// Records holds the slot-prefixed pose records; a slice of the datagram.
	Records []byte
}

// AppendPosesHeader appends a pose update header with a bin16 length of n
// record bytes. Fixed-width encodings keep the header PosesHeaderSize long.
func AppendPosesHeader(dst []byte, seq uint32, part, parts uint8, n int) []byte {
	dst = append(dst, mpFixArray5, DatagramPoses, mpUint32)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = append(dst, mpUint8, part, mpUint8, parts, mpBin16)
	return binary.BigEndian.AppendUint16(dst, uint16(n))
}

// AppendPoseUpdate appends datagram part of parts of pose update seq, whose
// records are the concatenation of runs (each a run of slot records).
func AppendPoseUpdate(dst []byte, seq uint32, part, parts uint8, runs [][]byte) []byte {
	n := 0
	for _, r := range runs {
		n += len(r)
	}
	dst = AppendPosesHeader(dst, seq, part, parts, n)
	for _, r := range runs {
		dst = append(dst, r...)
	}
	return dst
}

// AppendSlotRecord appends one record of a pose update: the slot number as
// u16 LE followed by the pose record.
func AppendSlotRecord(dst []byte, slot uint16, rec []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, slot)
	return append(dst, rec...)
}

// ParsePoseUpdate decodes a server's pose update datagram. It accepts any
// msgpack width for seq, part and parts, as other encoders may use them.
func ParsePoseUpdate(b []byte) (PoseUpdate, error) {
	var u PoseUpdate
	if len(b) < 2 || b[0] != mpFixArray5 || b[1] != DatagramPoses {
		return u, fmt.Errorf("%w: pose update header", ErrMalformed)
	}
	r := b[2:]
	seq, r, err := readUint(r)
	if err != nil || seq > 1<<32-1 {
		return u, fmt.Errorf("%w: pose update seq", ErrMalformed)
	}
	part, r, err := readUint(r)
	if err != nil || part > 255 {
		return u, fmt.Errorf("%w: pose update part", ErrMalformed)
	}
	parts, r, err := readUint(r)
	if err != nil || parts > 255 || (parts > 0 && part >= parts) {
		return u, fmt.Errorf("%w: pose update parts", ErrMalformed)
	}
	recs, r, err := readBin(r)
	if err != nil || len(r) != 0 {
		return u, fmt.Errorf("%w: pose update records", ErrMalformed)
	}
	u = PoseUpdate{Seq: uint32(seq), Part: uint8(part), Parts: uint8(parts), Records: recs}
	return u, nil
}

// NextRecord splits the first slot-prefixed record off recs. It returns the
// slot, the pose record and the rest; it does not allocate.
func NextRecord(recs []byte) (slot uint16, rec, rest []byte, err error) {
	if len(recs) < SlotSize+MinPoseSize {
		return 0, nil, nil, fmt.Errorf("%w: truncated pose record", ErrMalformed)
	}
	slot = binary.LittleEndian.Uint16(recs)
	n, err := PoseRecordSize(recs[SlotSize])
	if err != nil {
		return 0, nil, nil, err
	}
	if len(recs) < SlotSize+n {
		return 0, nil, nil, fmt.Errorf("%w: truncated pose record", ErrMalformed)
	}
	return slot, recs[SlotSize : SlotSize+n], recs[SlotSize+n:], nil
}

func readUint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, ErrMalformed
	}
	switch c := b[0]; {
	case c <= 0x7f:
		return uint64(c), b[1:], nil
	case c == mpUint8 && len(b) >= 2:
		return uint64(b[1]), b[2:], nil
	case c == mpUint16 && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), b[3:], nil
	case c == mpUint32 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), b[5:], nil
	}
	return 0, nil, ErrMalformed
}

func readBin(b []byte) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, nil, ErrMalformed
	}
	var n, h int
	switch {
	case b[0] == mpBin8 && len(b) >= 2:
		n, h = int(b[1]), 2
	case b[0] == mpBin16 && len(b) >= 3:
		n, h = int(binary.BigEndian.Uint16(b[1:])), 3
	default:
		return nil, nil, ErrMalformed
	}
	if len(b)-h < n {
		return nil, nil, ErrMalformed
	}
	return b[h : h+n], b[h+n:], nil
}
