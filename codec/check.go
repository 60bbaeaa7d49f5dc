package codec

import (
	"encoding/binary"
	"fmt"
)

// CheckValue reports whether b is exactly one well-formed msgpack value whose
// arrays and maps nest at most maxDepth deep. It walks the bytes without
// recursion and rejects any declared length that the remaining bytes cannot
// hold, so a decoder run after it never allocates for elements that are not
// there.
func CheckValue(b []byte, maxDepth int) error {
	// pending counts the values still to read at each open level.
	var stackBuf [16]int
	stack := stackBuf[:0]
	pending := 1
	pos := 0
	for {
		for pending == 0 {
			if len(stack) == 0 {
				if pos != len(b) {
					return fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(b)-pos)
				}
				return nil
			}
			pending = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
		}
		if pos >= len(b) {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, pos)
		}
		pending--
		c := b[pos]
		pos++
		rest := len(b) - pos
		var skip, items int // bytes to skip; items of a container that opens here
		container := false
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			// fixint, negative fixint, nil, false, true
		case c >= 0xa0 && c <= 0xbf:
			skip = int(c & 0x1f)
		case c >= 0x90 && c <= 0x9f:
			container, items = true, int(c&0x0f)
		case c >= 0x80 && c <= 0x8f:
			container, items = true, 2*int(c&0x0f)
		default:
			n, size, ok := lengthAfter(c, b[pos:])
			if !ok {
				return fmt.Errorf("%w: bad or truncated type %#02x at byte %d", ErrMalformed, c, pos-1)
			}
			pos += size
			rest -= size
			switch c {
			case 0xdc, 0xdd:
				container, items = true, n
			case 0xde, 0xdf:
				container, items = true, 2*n
			default:
				skip = n
			}
		}
		if container {
			if items > rest {
				return fmt.Errorf("%w: container of %d items in %d bytes", ErrMalformed, items, rest)
			}
			if len(stack) >= maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrTooLarge, maxDepth)
			}
			stack = append(stack, pending)
			pending = items
			continue
		}
		if skip > rest {
			return fmt.Errorf("%w: %d bytes declared, %d left", ErrMalformed, skip, rest)
		}
		pos += skip
	}
}

// lengthAfter decodes what follows type byte c: for fixed-size scalars the
// payload size, for str/bin/ext the payload size (ext includes its type byte),
// for array/map16/32 the element count. size is how many bytes the length
// itself took.
func lengthAfter(c byte, b []byte) (n, size int, ok bool) {
	fixed := func(k int) (int, int, bool) { return k, 0, true }
	var w int
	switch c {
	case 0xcc, 0xd0:
		return fixed(1)
	case 0xcd, 0xd1:
		return fixed(2)
	case 0xca, 0xce, 0xd2:
		return fixed(4)
	case 0xcb, 0xcf, 0xd3:
		return fixed(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 plus the type byte
		return fixed(1 + 1<<(c-0xd4))
	case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
		w = 1
	case 0xc5, 0xda, 0xc8, 0xdc, 0xde: // bin16, str16, ext16, array16, map16
		w = 2
	case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf: // bin32, str32, ext32, array32, map32
		w = 4
	default: // 0xc1 is never used
		return 0, 0, false
	}
	if len(b) < w {
		return 0, 0, false
	}
	switch w {
	case 1:
		n = int(b[0])
	case 2:
		n = int(binary.BigEndian.Uint16(b))
	default:
		n = int(binary.BigEndian.Uint32(b))
	}
	if c == 0xc7 || c == 0xc8 || c == 0xc9 {
		n++ // the ext type byte
	}
	return n, w, true
}
