package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// Bounds of one control message besides its size (Config.MaxMessage) and
// its depth (MaxDepth): what decoding it may allocate.
const (
	// MaxItems bounds the values of a control message, nested ones and
	// map keys included.
	MaxItems = 2048
	// MaxContainers bounds its arrays and maps, the values that cost a
	// decoder an allocation or two each.
	MaxContainers = 512
)

// Peeked is what Peek reads of a control message without decoding it.
type Peeked struct {
	Type string
	Ref  uint32
}

// Peek checks a control message body (a frame without its length) as
// Decode does, in one walk over its bytes without allocating for its
// values, and returns its type and ref. The check: one msgpack map with
// string keys everywhere, no binary or extension values, UTF-8 strings
// without NUL, finite floats, arrays and maps nested at most MaxDepth deep,
// at most MaxItems values and MaxContainers arrays and maps, and no length
// that the bytes cannot hold. A body that fails still has its ref when the
// walk read it before the failure, so that the error answering it can carry
// it.
func Peek(body []byte) (Peeked, error) {
	s := scanner{b: body, maxItems: MaxItems, maxContainers: MaxContainers}
	err := s.scan()
	return Peeked{Type: s.typ, Ref: uint32(s.ref)}, err
}

// DecodeFromServer decodes a control message a server sent. It checks the
// body as Decode does but for the bounds on values and containers: a big
// room's presence_state or entities_state holds more than a client may send.
func DecodeFromServer(body []byte) (Message, error) {
	s := scanner{b: body, maxItems: len(body), maxContainers: len(body)}
	if err := s.scan(); err != nil {
		return nil, err
	}
	return DecodePeeked(body, Peeked{Type: s.typ, Ref: uint32(s.ref)})
}

// DecodePeeked decodes a body that Peek accepted as p.
func DecodePeeked(body []byte, p Peeked) (Message, error) {
	m := newMessage(p.Type)
	if m == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, p.Type)
	}
	if err := unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, p.Type, err)
	}
	return m, nil
}

// scanner walks one control message body.
type scanner struct {
	b   []byte
	pos int
	// Bounds on the values and containers of the body.
	maxItems, maxContainers int
	// What the walk found at the top level.
	typ string
	ref uint64
	// key is the top-level key whose value comes next.
	key string
}

// level is an open array or map of the walk.
type level struct {
	left  int // values still to read; a map's count keys and values
	isMap bool
}

func (s *scanner) scan() error {
	var stackBuf [MaxDepth]level
	stack := stackBuf[:0]
	items, containers := 0, 0
	for first := true; first || len(stack) > 0; first = false {
		top := len(stack) - 1
		isKey := top >= 0 && stack[top].isMap && stack[top].left%2 == 0
		atTop := top == 0 // a key or value of the message's own map
		if top >= 0 {
			stack[top].left--
		}
		if s.pos >= len(s.b) {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, s.pos)
		}
		if items++; items > s.maxItems {
			return fmt.Errorf("%w: more than %d values", ErrTooLarge, s.maxItems)
		}
		c := s.b[s.pos]
		at := s.pos
		s.pos++
		if isKey && !isStr(c) {
			return fmt.Errorf("%w: a map key at byte %d is not a string", ErrMalformed, at)
		}
		if first && !isMap(c) {
			return fmt.Errorf("%w: a control message is a map", ErrMalformed)
		}
		switch {
		case isStr(c):
			str, err := s.str(c)
			if err != nil {
				return err
			}
			switch {
			case atTop && isKey:
				s.key = string(str)
			case atTop && s.key == "type":
				s.typ = string(str)
			case atTop && s.key == "ref":
				return fmt.Errorf("%w: ref is not an integer", ErrMalformed)
			}
		case isArray(c) || isMap(c):
			n, err := s.length(c)
			if err != nil {
				return err
			}
			if isMap(c) {
				n *= 2
			}
			if n > len(s.b)-s.pos {
				return fmt.Errorf("%w: container of %d items in %d bytes", ErrMalformed, n, len(s.b)-s.pos)
			}
			if containers++; containers > s.maxContainers {
				return fmt.Errorf("%w: more than %d arrays and maps", ErrTooLarge, s.maxContainers)
			}
			if len(stack) >= MaxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrTooLarge, MaxDepth)
			}
			if atTop && (s.key == "type" || s.key == "ref") {
				return fmt.Errorf("%w: %s is not a scalar", ErrMalformed, s.key)
			}
			stack = append(stack, level{left: n, isMap: isMap(c)})
		default:
			v, integer, err := s.scalar(c)
			if err != nil {
				return err
			}
			switch {
			case atTop && s.key == "ref" && !integer:
				return fmt.Errorf("%w: ref is not a positive integer", ErrMalformed)
			case atTop && s.key == "ref" && v > math.MaxUint32:
				return fmt.Errorf("%w: ref %d past 32 bits", ErrMalformed, v)
			case atTop && s.key == "ref":
				s.ref = v
			case atTop && s.key == "type":
				return fmt.Errorf("%w: type is not a string", ErrMalformed)
			}
		}
		for len(stack) > 0 && stack[len(stack)-1].left == 0 {
			stack = stack[:len(stack)-1]
		}
	}
	if s.pos != len(s.b) {
		return fmt.Errorf("%w: %d bytes after the message", ErrMalformed, len(s.b)-s.pos)
	}
	return nil
}

func isStr(c byte) bool   { return c >= 0xa0 && c <= 0xbf || c == 0xd9 || c == 0xda || c == 0xdb }
func isArray(c byte) bool { return c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd }
func isMap(c byte) bool   { return c >= 0x80 && c <= 0x8f || c == 0xde || c == 0xdf }

// length reads the length that follows an array, map or str type byte.
func (s *scanner) length(c byte) (int, error) {
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return int(c & 0x1f), nil
	case c >= 0x90 && c <= 0x9f, c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	}
	w := 4
	switch c {
	case 0xd9:
		w = 1
	case 0xda, 0xdc, 0xde:
		w = 2
	}
	if len(s.b)-s.pos < w {
		return 0, fmt.Errorf("%w: truncated length at byte %d", ErrMalformed, s.pos)
	}
	b := s.b[s.pos:]
	s.pos += w
	switch w {
	case 1:
		return int(b[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), nil
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

// str reads a string's bytes and checks that they are UTF-8 without NUL.
func (s *scanner) str(c byte) ([]byte, error) {
	n, err := s.length(c)
	if err != nil {
		return nil, err
	}
	if n > len(s.b)-s.pos {
		return nil, fmt.Errorf("%w: string of %d bytes in %d", ErrMalformed, n, len(s.b)-s.pos)
	}
	str := s.b[s.pos : s.pos+n]
	s.pos += n
	for _, ch := range str {
		if ch == 0 {
			return nil, fmt.Errorf("%w: string holds NUL", ErrMalformed)
		}
	}
	if !utf8.Valid(str) {
		return nil, fmt.Errorf("%w: string is not UTF-8", ErrMalformed)
	}
	return str, nil
}

// scalar reads nil, a bool, an integer or a float. For a non-negative
// integer it returns its value and integer true.
func (s *scanner) scalar(c byte) (v uint64, integer bool, err error) {
	switch {
	case c <= 0x7f:
		return uint64(c), true, nil
	case c >= 0xe0:
		return 0, false, nil // a negative fixint
	case c == 0xc0, c == 0xc2, c == 0xc3:
		return 0, false, nil
	}
	var size int
	switch c {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2, 0xca:
		size = 4
	case 0xcf, 0xd3, 0xcb:
		size = 8
	}
	if size == 0 {
		return 0, false, fmt.Errorf("%w: a value of type %#02x at byte %d, which control messages do not carry", ErrMalformed, c, s.pos-1)
	}
	if len(s.b)-s.pos < size {
		return 0, false, fmt.Errorf("%w: truncated at byte %d", ErrMalformed, s.pos)
	}
	b := s.b[s.pos : s.pos+size]
	s.pos += size
	switch c {
	case 0xca:
		if f := math.Float32frombits(binary.BigEndian.Uint32(b)); math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return 0, false, fmt.Errorf("%w: number %v", ErrMalformed, f)
		}
		return 0, false, nil
	case 0xcb:
		if f := math.Float64frombits(binary.BigEndian.Uint64(b)); math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false, fmt.Errorf("%w: number %v", ErrMalformed, f)
		}
		return 0, false, nil
	case 0xcc:
		return uint64(b[0]), true, nil
	case 0xcd:
		return uint64(binary.BigEndian.Uint16(b)), true, nil
	case 0xce:
		return uint64(binary.BigEndian.Uint32(b)), true, nil
	case 0xcf:
		return binary.BigEndian.Uint64(b), true, nil
	case 0xd0:
		return signed(int64(int8(b[0])))
	case 0xd1:
		return signed(int64(int16(binary.BigEndian.Uint16(b))))
	case 0xd2:
		return signed(int64(int32(binary.BigEndian.Uint32(b))))
	}
	return signed(int64(binary.BigEndian.Uint64(b)))
}

// signed returns a signed integer's value when it is not negative.
func signed(i int64) (uint64, bool, error) {
	if i < 0 {
		return 0, false, nil
	}
	return uint64(i), true, nil
}
