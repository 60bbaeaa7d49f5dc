package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits of the control stream.
const (
	// FrameHeaderSize is the size of the big-endian length in front of every
	// control message.
	FrameHeaderSize = 4
	// DefaultMaxMessage is the default limit on a control message from a client.
	DefaultMaxMessage = 64 << 10
	// MaxDepth is how deep arrays and maps may nest in a control message.
	MaxDepth = 16
)

// AppendFrame appends m, framed: its msgpack encoding behind a 4-byte
// big-endian length. It sets m's type field.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	h := m.header()
	h.Type = m.kind()
	buf := bytes.NewBuffer(dst)
	start := buf.Len()
	buf.Write([]byte{0, 0, 0, 0})
	enc := newEncoder(buf)
	defer msgpack.PutEncoder(enc)
	if err := enc.Encode(m); err != nil {
		return dst, fmt.Errorf("encode %s: %w", h.Type, err)
	}
	out := buf.Bytes()
	n := len(out) - start - FrameHeaderSize
	if n > math.MaxUint32 {
		return dst, fmt.Errorf("encode %s: %w: %d bytes", h.Type, ErrTooLarge, n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

// EncodeFrame returns m framed, as AppendFrame does into a new slice.
func EncodeFrame(m Message) ([]byte, error) {
	return AppendFrame(nil, m)
}

// ReadFrame reads one framed message from r into buf (grown as needed) and
// returns the message body. A length over max is refused with ErrTooLarge
// before anything of the body is read.
func ReadFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var hdr [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(max) {
		return nil, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, n, max)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// Decode decodes one control message body (a frame without its length):
// Peek's check, then one decode, so deep nesting, too many values and
// lengths that the bytes cannot hold are refused before anything is
// allocated, and every free-form value (event data, components, meta) is
// one JSON could hold.
func Decode(body []byte) (Message, error) {
	p, err := Peek(body)
	if err != nil {
		return nil, err
	}
	return DecodePeeked(body, p)
}

func unmarshal(b []byte, v any) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	return dec.Decode(v)
}

func newMessage(t string) Message {
	if mt, ok := messageTypes[t]; ok {
		return mt.new()
	}
	return nil
}

// CheckJSON reports whether v, as decoded by this package, is a value JSON can
// hold: nil, bools, finite numbers, valid UTF-8 strings without NUL, and
// arrays and string-keyed maps of those. Stores keep component values as JSON.
func CheckJSON(v any) error {
	switch v := v.(type) {
	case nil, bool, int64, uint64, int:
		return nil
	case float32:
		return CheckJSON(float64(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: number %v", ErrMalformed, v)
		}
		return nil
	case string:
		return checkString(v)
	case []any:
		for _, e := range v {
			if err := CheckJSON(e); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for k, e := range v {
			if err := checkString(k); err != nil {
				return err
			}
			if err := CheckJSON(e); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: value of type %T", ErrMalformed, v)
}

func checkString(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: string is not UTF-8", ErrMalformed)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("%w: string holds NUL", ErrMalformed)
		}
	}
	return nil
}

// AppendEntities appends entities to dst as msgpack map entries (each id,
// then its components), without the map's header, encoded as control
// messages are: for EntitiesState.Encoded.
func AppendEntities(dst []byte, entities map[string]Components) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := newEncoder(buf)
	defer msgpack.PutEncoder(enc)
	for id, c := range entities {
		if err := enc.EncodeString(id); err != nil {
			return dst, err
		}
		if err := enc.Encode(c); err != nil {
			return dst, fmt.Errorf("encode entity %s: %w", id, err)
		}
	}
	return buf.Bytes(), nil
}

// newEncoder returns a pooled encoder writing to w as control messages are
// written. Put it back with msgpack.PutEncoder.
func newEncoder(w io.Writer) *msgpack.Encoder {
	enc := msgpack.GetEncoder()
	enc.Reset(w)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	return enc
}

// EncodeMsgpack writes the state with its Encoded entities among the
// others.
func (m *EntitiesState) EncodeMsgpack(enc *msgpack.Encoder) error {
	n := 3
	if m.Ref != 0 {
		n++
	}
	err := errors.Join(enc.EncodeMapLen(n), enc.EncodeString("type"), enc.EncodeString(m.Type))
	if m.Ref != 0 {
		err = errors.Join(err, enc.EncodeString("ref"), enc.EncodeUint32(m.Ref))
	}
	err = errors.Join(err, enc.EncodeString("seq"), enc.EncodeUint32(m.Seq),
		enc.EncodeString("entities"), enc.EncodeMapLen(len(m.Entities)+m.EncodedCount))
	for id, c := range m.Entities {
		err = errors.Join(err, enc.EncodeString(id), enc.Encode(c))
	}
	if err != nil {
		return err
	}
	_, err = enc.Writer().Write(m.Encoded)
	return err
}
