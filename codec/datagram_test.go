package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestPoseDatagramRoundTrip(t *testing.T) {
	p := Pose{Time: 99, Head: Identity, HasRight: true, Right: Identity}
	d := AppendPoseDatagram(nil, &p)
	if len(d) != 4+p.Size() {
		t.Fatalf("datagram is %d bytes, want %d", len(d), 4+p.Size())
	}
	if k, err := DatagramKind(d); err != nil || k != DatagramPose {
		t.Fatalf("DatagramKind = %d, %v", k, err)
	}
	rec, err := ParsePoseDatagram(d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec, AppendPose(nil, &p)) {
		t.Error("record differs from the pose's")
	}
	// It is msgpack: a generic decoder reads the same thing.
	var generic []any
	if err := msgpack.Unmarshal(d, &generic); err != nil || len(generic) != 2 {
		t.Fatalf("msgpack reads %v, %v", generic, err)
	}
}

func TestParsePoseDatagramRefusesBadInput(t *testing.T) {
	good := AppendPoseDatagram(nil, &Pose{Head: Identity})
	tests := []struct {
		name string
		d    []byte
	}{
		{"empty", nil},
		{"wrong kind", append([]byte{0x92, 0x02}, good[2:]...)},
		{"length larger than the record", append(append([]byte{}, good[:3]...), append([]byte{byte(len(good))}, good[4:]...)...)},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"not an array", []byte{0x01, 0x02, 0x03, 0x04}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePoseDatagram(tt.d); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParsePoseDatagram = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPoseUpdateRoundTrip(t *testing.T) {
	p1 := AppendPose(nil, &Pose{Time: 1, Head: Identity})
	p2 := AppendPose(nil, &Pose{Time: 2, Head: Identity, HasLeft: true, Left: Identity})
	var recs []byte
	recs = AppendSlotRecord(recs, 7, p1)
	recs = AppendSlotRecord(recs, 300, p2)
	d := AppendPosesHeader(nil, 123456, 1, 3, len(recs))
	if len(d) != PosesHeaderSize {
		t.Fatalf("header is %d bytes, want %d", len(d), PosesHeaderSize)
	}
	d = append(d, recs...)
	u, err := ParsePoseUpdate(d)
	if err != nil {
		t.Fatal(err)
	}
	if u.Seq != 123456 || u.Part != 1 || u.Parts != 3 {
		t.Errorf("header %+v", u)
	}
	slot, rec, rest, err := NextRecord(u.Records)
	if err != nil || slot != 7 || !bytes.Equal(rec, p1) {
		t.Fatalf("first record: slot %d, %v", slot, err)
	}
	slot, rec, rest, err = NextRecord(rest)
	if err != nil || slot != 300 || !bytes.Equal(rec, p2) || len(rest) != 0 {
		t.Fatalf("second record: slot %d, %v, %d left", slot, err, len(rest))
	}
	var generic []any
	if err := msgpack.Unmarshal(d, &generic); err != nil || len(generic) != 5 {
		t.Fatalf("msgpack reads %v, %v", generic, err)
	}
}

func TestParsePoseUpdateAcceptsCompactIntegers(t *testing.T) {
	recs := AppendSlotRecord(nil, 1, AppendPose(nil, &Pose{Head: Identity}))
	d, err := msgpack.Marshal([]any{DatagramPoses, 5, 0, 1, recs})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParsePoseUpdate(d)
	if err != nil || u.Seq != 5 || u.Parts != 1 || !bytes.Equal(u.Records, recs) {
		t.Fatalf("ParsePoseUpdate = %+v, %v", u, err)
	}
}

func TestParsePoseUpdateRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		d    []byte
	}{
		{"empty", nil},
		{"part not below parts", AppendPosesHeader(nil, 1, 2, 2, 0)},
		{"records shorter than declared", AppendPosesHeader(nil, 1, 0, 1, 10)},
		{"wrong kind", []byte{0x95, 0x01, 0x00, 0x00, 0x01, 0xc4, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePoseUpdate(tt.d); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParsePoseUpdate = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPingDatagram(t *testing.T) {
	good, _ := msgpack.Marshal([]any{DatagramPing, uint64(1234567)})
	if err := CheckPingDatagram(good); err != nil {
		t.Errorf("good ping: %v", err)
	}
	big, _ := msgpack.Marshal([]any{DatagramPing, string(make([]byte, 100))})
	if err := CheckPingDatagram(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("big ping: %v, want ErrTooLarge", err)
	}
	if err := CheckPingDatagram([]byte{0x92, 0x03}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ping without payload: %v, want ErrMalformed", err)
	}
}

func TestHeadPoseIsAtMost24BytesOnTheWire(t *testing.T) {
	// A full datagram of head poses: header amortized over the records.
	rec := AppendPose(nil, &Pose{Head: Identity})
	per := SlotSize + len(rec)
	n := (MaxDatagramSize - PosesHeaderSize) / per
	total := PosesHeaderSize + n*per
	if perPose := float64(total) / float64(n); perPose > 24 {
		t.Errorf("%.2f bytes per head pose, want <= 24", perPose)
	}
}

func BenchmarkParsePoseDatagram(b *testing.B) {
	d := AppendPoseDatagram(nil, &Pose{Head: Identity})
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := ParsePoseDatagram(d); err != nil {
			b.Fatal(err)
		}
	}
}
