package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzDecode feeds arbitrary bodies to the control message decoder: it must
// never panic, and what it accepts must encode and decode to the same thing.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		frame, err := EncodeFrame(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame[FrameHeaderSize:])
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add(bytes.Repeat([]byte{0x91}, 40))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if _, serverErr := DecodeFromServer(body); err == nil && serverErr != nil {
			t.Fatalf("DecodeFromServer refused what Decode took: %v", serverErr)
		}
		if err != nil {
			if m != nil {
				t.Fatal("error with a message")
			}
			Peek(body) // must not panic on what Decode refused
			return
		}
		// One round trip normalizes what msgpack may spell two ways (an
		// empty map and none, float widths); after it, a round trip changes
		// nothing.
		once := roundTrip(t, m)
		if a, b := canonical(t, once), canonical(t, roundTrip(t, once)); !bytes.Equal(a, b) {
			t.Fatalf("round trip changed %T:\n%x\n%x", m, a, b)
		}
	})
}

// canonical encodes m with its map keys sorted: equal messages give equal
// bytes, NaNs included, whatever their maps' iteration order.
func canonical(t *testing.T, m Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(m); err != nil {
		t.Fatalf("encode %T: %v", m, err)
	}
	return buf.Bytes()
}

func roundTrip(t *testing.T, m Message) Message {
	t.Helper()
	frame, err := EncodeFrame(m)
	if err != nil {
		t.Fatalf("re-encode %T: %v", m, err)
	}
	again, err := Decode(frame[FrameHeaderSize:])
	if err != nil {
		t.Fatalf("decode of re-encoded %T: %v", m, err)
	}
	return again
}

// FuzzReadFrame checks the framing against arbitrary streams.
func FuzzReadFrame(f *testing.F) {
	frame, _ := EncodeFrame(&Join{Room: "lobby"})
	f.Add(frame)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x00})
	f.Fuzz(func(t *testing.T, stream []byte) {
		body, err := ReadFrame(bytes.NewReader(stream), nil, 256)
		if err != nil {
			return
		}
		if len(body) == 0 || len(body) > 256 || len(body)+FrameHeaderSize > len(stream) {
			t.Fatalf("body of %d bytes from %d", len(body), len(stream))
		}
	})
}

// FuzzPoseDatagram feeds arbitrary datagrams to the server's datagram
// decoders: they must never panic, and an accepted pose re-encodes to the
// same bytes.
func FuzzPoseDatagram(f *testing.F) {
	f.Add(AppendPoseDatagram(nil, &Pose{Time: 5, Head: Identity}))
	f.Add(AppendPoseDatagram(nil, &Pose{Head: Identity, HasLeft: true, HasRight: true, Left: Identity, Right: Identity}))
	f.Add([]byte{0x92, 0x03, 0xce, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, d []byte) {
		kind, err := DatagramKind(d)
		if err != nil {
			return
		}
		switch kind {
		case DatagramPose:
			rec, err := ParsePoseDatagram(d)
			if err != nil {
				return
			}
			var p Pose
			if err := ParsePose(rec, &p); err != nil {
				t.Fatalf("checked record does not parse: %v", err)
			}
			// Decoding then encoding is the identity on the time and flags,
			// and on positions; rotations may differ only in unused bits.
			again := AppendPose(nil, &p)
			var q Pose
			if err := ParsePose(again, &q); err != nil || q.Time != p.Time || q.Head.Position != p.Head.Position {
				t.Fatalf("pose round trip: %+v vs %+v (%v)", p, q, err)
			}
		case DatagramPing:
			_ = CheckPingDatagram(d)
		}
	})
}

// FuzzPoseUpdate feeds arbitrary datagrams to the client's pose update decoder.
func FuzzPoseUpdate(f *testing.F) {
	recs := AppendSlotRecord(nil, 3, AppendPose(nil, &Pose{Head: Identity}))
	f.Add(append(AppendPosesHeader(nil, 1, 0, 1, len(recs)), recs...))
	f.Add(AppendPosesHeader(nil, 7, 0, 0, 0))
	f.Fuzz(func(t *testing.T, d []byte) {
		u, err := ParsePoseUpdate(d)
		if err != nil {
			return
		}
		rest := u.Records
		for len(rest) > 0 {
			var rec []byte
			_, rec, rest, err = NextRecord(rest)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("NextRecord error %v is not ErrMalformed", err)
				}
				return
			}
			if CheckPose(rec) != nil {
				t.Fatal("NextRecord returned a bad record")
			}
		}
	})
}

// FuzzCheckValue checks the structural checker never panics and agrees with
// itself on prefixes: a value with trailing bytes is never accepted.
func FuzzCheckValue(f *testing.F) {
	f.Add([]byte{0x93, 0x01, 0xa1, 'x', 0xc0})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckValue(b, 8) == nil && CheckValue(append(append([]byte{}, b...), 0x00), 8) == nil {
			t.Fatal("accepted a value followed by a trailing byte")
		}
	})
}
