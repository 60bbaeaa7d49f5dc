package rooms

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/posecast/posecast/codec"
)

// Limits on names and ids.
const (
	// MaxIDLength bounds room, user, device and entity ids.
	MaxIDLength = 64
	// MaxNameLength bounds display names, in bytes.
	MaxNameLength = 64
	// MaxComponents bounds the components of one entity.
	MaxComponents = 64
	// MaxEventName bounds application event names.
	MaxEventName = 64
	// MaxEntityBytes bounds one environment entity, as componentsSize counts.
	MaxEntityBytes = 16 << 10
	// MaxMetaBytes bounds the application metadata of a presence meta.
	MaxMetaBytes = 1 << 10
)

// ComponentAvatar marks an avatar entity; only the server sets it.
const ComponentAvatar = "avatar"

// reservedEvents are the event names only the room publishes.
var reservedEvents = map[string]bool{
	codec.EventUserJoined: true, codec.EventUserLeft: true,
	codec.EventUserStale: true, codec.EventUserRecovered: true,
	EventUserMoved:     true,
	EventEntityCreated: true, EventEntityUpdated: true, EventEntityDeleted: true,
}

// ValidID reports whether s can be a room, user, device or entity id:
// 1 to 64 bytes of ASCII letters, digits and "_.:@-".
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// validName reports whether s can be a display name: printable UTF-8 of at
// most MaxNameLength bytes.
func validName(s string) bool {
	if len(s) > MaxNameLength || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validComponentName reports whether s can name a component: 1 to 64 bytes
// of lower-case letters, digits and underscores, starting with a letter.
func validComponentName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validEventName reports whether an application may publish an event of
// this name: a component-style name that the room does not reserve.
func validEventName(s string) bool {
	return len(s) <= MaxEventName && validComponentName(s) && !reservedEvents[s]
}

// checkComponents validates components a member sends. allowNil permits nil
// values, which remove a component in an update.
func checkComponents(c Components, allowNil bool) error {
	if len(c) == 0 {
		return fmt.Errorf("%w: no components", ErrInvalid)
	}
	if len(c) > MaxComponents {
		return fmt.Errorf("%w: %d components, limit %d", ErrInvalid, len(c), MaxComponents)
	}
	for name, v := range c {
		if !validComponentName(name) {
			return fmt.Errorf("%w: component name %q", ErrInvalid, name)
		}
		if name == ComponentAvatar {
			return fmt.Errorf("%w: the %q component is the server's", ErrForbidden, name)
		}
		if v == nil && !allowNil {
			return fmt.Errorf("%w: component %q is nil", ErrInvalid, name)
		}
		if err := codec.CheckJSON(v); err != nil {
			return fmt.Errorf("%w: component %q: %v", ErrInvalid, name, err)
		}
	}
	return nil
}

// componentsSize estimates the encoded size of components, in bytes.
func componentsSize(c Components) int {
	n := 0
	for k, v := range c {
		n += len(k) + valueSize(v)
	}
	return n
}

// valueSize estimates the encoded size of a JSON-compatible value: close
// to its msgpack size, never much under it.
func valueSize(v any) int {
	switch v := v.(type) {
	case string:
		return len(v) + 5
	case []any:
		n := 5
		for _, e := range v {
			n += valueSize(e)
		}
		return n
	case map[string]any:
		n := 5
		for k, e := range v {
			n += len(k) + 5 + valueSize(e)
		}
		return n
	case []float64:
		return 5 + 9*len(v)
	case nil, bool:
		return 1
	}
	return 9 // numbers
}

// newID returns a random id with the given prefix.
func newID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
