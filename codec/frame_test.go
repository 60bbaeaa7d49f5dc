package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// sameJSON reports whether a and b read the same as JSON, which forgets the
// integer widths msgpack keeps.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func sampleMessages() []Message {
	return []Message{
		&Hello{Version: Version, Client: "test"},
		&Welcome{Version: Version, Session: "s1", ServerTime: 1700000000000, TickMillis: 200, MaxDatagram: 1200, MaxMessage: 65536},
		&Join{Header: Header{Ref: 1}, Room: "lobby", Name: "Ada", Device: "d1", Meta: map[string]any{"color": "red"}, Token: "pc1.e30.c2ln"},
		&Joined{Header: Header{Ref: 1}, Room: "lobby", User: "u1", Entity: "u1", Slot: 3, PresenceRef: "r1", Position: [3]float64{1, 2.1, 3}, Rotation: [4]float64{0, 0, 0, 1}, TickMillis: 200, Token: "pc1.e30.c2ln"},
		&Leave{Header: Header{Ref: 2}},
		&PresenceUpdate{Header: Header{Ref: 4}, Meta: map[string]any{"status": "away"}},
		&Event{Name: "door_opened", Data: map[string]any{"door": "d7", "angle": 1.5, "tags": []any{"a", int64(-3)}}},
		&Create{Header: Header{Ref: 3}, Components: Components{"obstacle": true, "position": []any{1.0, 0.0, 2.0}}},
		&Update{Header: Header{Ref: 4}, Entity: "e1", Components: Components{"open": true, "gone": nil}},
		&Delete{Header: Header{Ref: 5}, Entity: "e1"},
		&Resync{},
		&Ping{Header: Header{Ref: 6}, Time: 123},
		&Pong{Header: Header{Ref: 6}, Time: 123, ServerTime: 456},
		&EntitiesState{Seq: 9, Entities: map[string]Components{"e1": {"spawn_point": true}}},
		&EntitiesDiff{Creates: map[string]Components{"u2": {"avatar": true}}, Updates: map[string]Components{}, Deletes: []string{"u1"}},
		&PresenceState{State: map[string]PresenceEntry{"u1": {Metas: []PresenceMeta{{Ref: "r1", Name: "Ada", OnlineAt: 1}}}}},
		&PresenceDiff{Joins: map[string]PresenceEntry{"u2": {Metas: []PresenceMeta{{Ref: "r2", PrevRef: "r0", Stale: true}}}}, Leaves: map[string]PresenceEntry{}},
		&OK{Header: Header{Ref: 3}, Entity: "e9"},
		&Error{Header: Header{Ref: 7}, Code: CodeInvalid, Message: "room name too long"},
		&Goodbye{Code: CodeServerShutdown, Message: "server is stopping"},
		&Goodbye{Code: CodeMoved, Message: "room lobby lives on node n2", Moved: &Location{Node: "n2", URL: "https://10.0.0.2:4433/wt", Current: CertHash{Hex: "ab", Base64: "qw=="}}},
		&Error{Header: Header{Ref: 8}, Code: CodeMoved, Message: "room lobby lives on node n2", Moved: &Location{URL: "https://10.0.0.2:4433/wt", Current: CertHash{Hex: "ab", Base64: "qw=="}, Next: &CertHash{Hex: "cd", Base64: "zQ=="}}},
		&SubscribePresence{Header: Header{Ref: 9}, Match: "^lobby:", IntervalMillis: 3000, Token: "pc1.e30.c2ln"},
		&UnsubscribePresence{Header: Header{Ref: 10}, Sub: 9},
		&PresenceCollection{Header: Header{Ref: 9}, Sub: 9, State: map[string]map[string]PresenceEntry{"lobby:1": {"u1": {Metas: []PresenceMeta{{Ref: "r1", Name: "Ada", OnlineAt: 1}}}}}},
		&PresenceCollection{Sub: 9, Joins: map[string]map[string]PresenceEntry{"lobby:2": {"u2": {Metas: []PresenceMeta{{Ref: "r2"}}}}}, Leaves: map[string]map[string]PresenceEntry{"lobby:1": {"u1": {Metas: []PresenceMeta{{Ref: "r1"}}}}}},
	}
}

// Every type of the table is made as itself and has a sample that the
// round trip below checks: a type added to the table without one fails.
func TestEveryTypeOfTheTableHasASample(t *testing.T) {
	samples := make(map[string]bool)
	for _, m := range sampleMessages() {
		samples[m.kind()] = true
	}
	for typ := range Types() {
		if m := New(typ); m == nil || m.kind() != typ || m.header().Type != typ {
			t.Errorf("New(%q) = %#v", typ, m)
		}
		if !samples[typ] {
			t.Errorf("no sample message of type %q", typ)
		}
	}
	if len(samples) != len(Types()) {
		t.Errorf("%d types sampled, %d in the table", len(samples), len(Types()))
	}
}

func TestEveryMessageRoundTrips(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.kind(), func(t *testing.T) {
			frame, err := EncodeFrame(m)
			if err != nil {
				t.Fatal(err)
			}
			body, err := ReadFrame(bytes.NewReader(frame), nil, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			if got.kind() != m.kind() || got.header().Type != m.kind() {
				t.Fatalf("decoded a %q, want %q", got.kind(), m.kind())
			}
			if !sameJSON(t, got, m) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(m)
				t.Errorf("decoded %s\nwant %s", g, w)
			}
		})
	}
}

func TestMessagesAreMapsWithAType(t *testing.T) {
	frame, err := EncodeFrame(&Join{Header: Header{Ref: 1}, Room: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := msgpack.Unmarshal(frame[FrameHeaderSize:], &generic); err != nil {
		t.Fatal(err)
	}
	if generic["type"] != "join" || generic["room"] != "lobby" {
		t.Errorf("generic decode %v", generic)
	}
}

// marshal encodes v as msgpack, for bodies a client built by hand might send.
func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRefusesBadMessages(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, 100)
	deep = append(deep, 0x01)
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"empty body", nil, ErrMalformed},
		{"unknown type", marshal(t, map[string]any{"type": "teleport"}), ErrUnknownType},
		{"no type", marshal(t, map[string]any{"room": "x"}), ErrUnknownType},
		{"not a map", marshal(t, []any{1, 2}), ErrMalformed},
		{"wrong field type", marshal(t, map[string]any{"type": "join", "room": 5}), ErrMalformed},
		{"truncated", marshal(t, map[string]any{"type": "join", "room": "lobby"})[:8], ErrMalformed},
		{"map declaring four billion entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"array nested 100 deep", append([]byte{0x82, 0xa4, 't', 'y', 'p', 'e', 0xa5, 'e', 'v', 'e', 'n', 't', 0xa4, 'd', 'a', 't', 'a'}, deep...), ErrTooLarge},
		{"trailing bytes", append(marshal(t, map[string]any{"type": "leave"}), 0xc0), ErrMalformed},
		{"non-string map key in data", marshal(t, map[string]any{"type": "event", "name": "x", "data": map[int]int{1: 2}}), ErrMalformed},
		{"binary extension in data", marshal(t, map[string]any{"type": "event", "name": "x", "data": msgpack.RawMessage{0xd4, 0x01, 0x00}}), ErrMalformed},
		{"invalid UTF-8 in components", marshal(t, map[string]any{"type": "create", "components": map[string]any{"x": "\xff"}}), ErrMalformed},
		{"an extension value in a field no message has", marshal(t, map[string]any{"type": "leave", "x": msgpack.RawMessage{0xd4, 0x01, 0x00}}), ErrMalformed},
		{"binary in components", marshal(t, map[string]any{"type": "create", "components": map[string]any{"x": []byte{1, 2}}}), ErrMalformed},
		{"a ref past 32 bits", marshal(t, map[string]any{"type": "leave", "ref": int64(1) << 40}), ErrMalformed},
		{"NaN in components", marshal(t, map[string]any{"type": "update", "entity": "e", "components": map[string]any{"x": nanValue()}}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.body)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decode = %v, %v; want %v", m, err, tt.want)
			}
		})
	}
}

func nanValue() float64 {
	var zero float64
	return zero / zero
}

func TestReadFrameLimits(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"length over the limit is refused unread", []byte{0x00, 0x10, 0x00, 0x01}, ErrTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"empty frame", []byte{0, 0, 0, 0}, ErrMalformed},
		{"body cut short", []byte{0, 0, 0, 5, 1, 2}, io.ErrUnexpectedEOF},
		{"header cut short", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"nothing", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.input), nil, 1024)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckValue(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"fixint", []byte{0x05}, true},
		{"nested map", marshal(t, map[string]any{"a": []any{1, "x", map[string]any{"b": 2.5}}}), true},
		{"all scalar widths", marshal(t, []any{uint8(200), uint16(60000), uint32(1 << 31), uint64(1 << 63), int8(-100), int16(-30000), int32(-1 << 30), int64(-1 << 62), float32(1.5), 2.5, nil, true, false, []byte{1, 2, 3}}), true},
		{"ext", []byte{0xc7, 0x02, 0x05, 0xaa, 0xbb}, true},
		{"never-used byte", []byte{0xc1}, false},
		{"truncated str", []byte{0xa5, 'a'}, false},
		{"str32 longer than input", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, false},
		{"array16 with too few bytes", []byte{0xdc, 0x00, 0x10, 0x01}, false},
		{"two values", []byte{0x01, 0x02}, false},
		{"depth at the limit", append(bytes.Repeat([]byte{0x91}, 16), 0x01), true},
		{"depth over the limit", append(bytes.Repeat([]byte{0x91}, 17), 0x01), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckValue(tt.b, 16)
			if (err == nil) != tt.ok {
				t.Errorf("CheckValue = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	m := &EntitiesDiff{
		Creates: map[string]Components{"u2": {"avatar": true, "slot": 4, "name": "Ada", "position": []float64{1, 2, 3}}},
		Updates: map[string]Components{"door": {"open": true}},
		Deletes: []string{"u1"},
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPeekReadsTheRefOfWhatDoesNotDecode(t *testing.T) {
	refThenDeep := append([]byte{0x82, 0xa3, 'r', 'e', 'f', 0x05, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 100)...)
	refThenTruncated := []byte{0x82, 0xa3, 'r', 'e', 'f', 0x03, 0xa4, 't', 'y', 'p', 'e', 0xa5, 'l', 'e'}
	tests := []struct {
		name   string
		body   []byte
		want   uint32
		peekOK bool // Peek accepts it; Decode then refuses it
	}{
		{"an unknown type", marshal(t, map[string]any{"type": "teleport", "ref": 7}), 7, true},
		{"a field of the wrong type", marshal(t, map[string]any{"type": "join", "room": 5, "ref": 8}), 8, true},
		{"no ref", marshal(t, map[string]any{"type": "teleport"}), 0, true},
		{"a ref of the wrong type", marshal(t, map[string]any{"type": "leave", "ref": "nine"}), 0, false},
		{"a ref past 32 bits", marshal(t, map[string]any{"type": "leave", "ref": int64(1)<<40 + 5}), 0, false},
		{"not msgpack", []byte{0xc1}, 0, false},
		{"nested too deep, after the ref", refThenDeep, 5, false},
		{"truncated after the ref", refThenTruncated, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Peek(tt.body)
			if p.Ref != tt.want || (err == nil) != tt.peekOK {
				t.Errorf("Peek = %+v, %v; want ref %d, accepted %v", p, err, tt.want, tt.peekOK)
			}
			if _, err := Decode(tt.body); err == nil {
				t.Error("Decode accepted it")
			}
		})
	}
}

func TestPeekBoundsWhatADecodeMayAllocate(t *testing.T) {
	event := func(data any) []byte { return marshal(t, map[string]any{"type": "event", "name": "x", "data": data}) }
	many := func(n int, v any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"values at the limit", event(many(MaxItems-8, 1)), nil},
		{"one value too many", event(many(MaxItems, 1)), ErrTooLarge},
		{"containers at the limit", event(many(MaxContainers-2, map[string]any{})), nil},
		{"one container too many", event(many(MaxContainers, []any{})), ErrTooLarge},
		{"a map key that is not a string", []byte{0x82, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'i', 'n', 'g', 0x01, 0x02}, ErrMalformed},
		{"a string with NUL", event("a\x00b"), ErrMalformed},
		{"a string that is not UTF-8", event("\xff"), ErrMalformed},
		{"an infinite float", event(math.Inf(1)), ErrMalformed},
		{"not a map", marshal(t, []any{"type", "ping"}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Peek(tt.body)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Peek = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestABigRoomsStateDecodesFromTheServerOnly(t *testing.T) {
	state := &PresenceState{State: make(map[string]PresenceEntry)}
	for i := range 1000 {
		id := fmt.Sprintf("u%d", i)
		state.State[id] = PresenceEntry{Metas: []PresenceMeta{{Ref: "p" + id, Name: id, OnlineAt: int64(i)}}}
	}
	frame, err := EncodeFrame(state)
	if err != nil {
		t.Fatal(err)
	}
	body := frame[FrameHeaderSize:]
	if _, err := Decode(body); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Decode = %v; want ErrTooLarge: more than a client may send", err)
	}
	m, err := DecodeFromServer(body)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*PresenceState); len(got.State) != 1000 || got.State["u999"].Metas[0].Ref != "pu999" {
		t.Errorf("decoded %d entries, u999 %+v", len(got.State), got.State["u999"])
	}
	for _, bad := range [][]byte{body[:len(body)-1], {0xc1}, append([]byte{0x91}, body...)} {
		if _, err := DecodeFromServer(bad); err == nil {
			t.Errorf("DecodeFromServer took %x...", bad[:min(8, len(bad))])
		}
	}
}

// BenchmarkDecodeWorstCase decodes the costliest control messages a
// client may send within the limits: 64 KiB of values nested as a decoder
// must allocate for them, and what Peek refuses of the same size.
func BenchmarkDecodeWorstCase(b *testing.B) {
	many := func(n int, v any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	body := func(data any) []byte {
		raw, err := msgpack.Marshal(map[string]any{"type": "event", "name": "x", "data": data})
		if err != nil {
			b.Fatal(err)
		}
		return raw
	}
	cases := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"containers_at_the_limit", body(many(MaxContainers/2-2, map[string]any{"k": []any{}})), true},
		{"values_at_the_limit", body(many(MaxItems-8, int64(1<<40))), true},
		{"strings_at_the_limit", body(many(MaxItems-8, "abcdef")), true},
		{"65000_empty_maps_refused", body(many(65000, map[string]any{})), false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(c.body); (err == nil) != c.ok {
					b.Fatalf("Decode: %v", err)
				}
			}
		})
	}
}

func TestAStateCarriesItsEncodedEntitiesWithTheOthers(t *testing.T) {
	cached, err := AppendEntities(nil, map[string]Components{"b": {"x": 1.5}, "c": {"door": map[string]any{"open": true}}})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := EncodeFrame(&EntitiesState{Header: Header{Ref: 4}, Seq: 9, Entities: map[string]Components{"a": {"avatar": true}}, Encoded: cached, EncodedCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(frame[FrameHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*EntitiesState)
	want := &EntitiesState{Header: Header{Type: TypeEntitiesState, Ref: 4}, Seq: 9, Entities: map[string]Components{
		"a": {"avatar": true}, "b": {"x": 1.5}, "c": {"door": map[string]any{"open": true}},
	}}
	if !sameJSON(t, got, want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
}
