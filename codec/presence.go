package codec

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// presenceMetasKey is the key of a presence entry's metas.
const presenceMetasKey = "metas"

// extraKeys returns the entry's Extra keys in order, "metas" left out.
func (e PresenceEntry) extraKeys() []string {
	keys := slices.Sorted(maps.Keys(e.Extra))
	return slices.DeleteFunc(keys, func(k string) bool { return k == presenceMetasKey })
}

// EncodeMsgpack writes the entry as one map: "metas", then the Extra keys.
func (e PresenceEntry) EncodeMsgpack(enc *msgpack.Encoder) error {
	keys := e.extraKeys()
	if err := enc.EncodeMapLen(1 + len(keys)); err != nil {
		return err
	}
	if err := enc.EncodeString(presenceMetasKey); err != nil {
		return err
	}
	if err := enc.Encode(e.Metas); err != nil {
		return err
	}
	for _, k := range keys {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.Encode(e.Extra[k]); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads an entry: "metas", and any other key into Extra.
func (e *PresenceEntry) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	*e = PresenceEntry{}
	for range max(n, 0) {
		key, err := dec.DecodeString()
		if err != nil {
			return err
		}
		if key == presenceMetasKey {
			if err := dec.Decode(&e.Metas); err != nil {
				return err
			}
			continue
		}
		v, err := dec.DecodeInterfaceLoose()
		if err != nil {
			return err
		}
		if e.Extra == nil {
			e.Extra = make(map[string]any)
		}
		e.Extra[key] = v
	}
	return nil
}

// MarshalJSON writes the entry as one object: "metas" and the Extra keys.
func (e PresenceEntry) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 1+len(e.Extra))
	for _, k := range e.extraKeys() {
		m[k] = e.Extra[k]
	}
	metas := e.Metas
	if metas == nil {
		metas = []PresenceMeta{}
	}
	m[presenceMetasKey] = metas
	return json.Marshal(m)
}

// UnmarshalJSON reads an entry: "metas", and any other key into Extra.
func (e *PresenceEntry) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = PresenceEntry{}
	for k, raw := range m {
		if k == presenceMetasKey {
			if err := json.Unmarshal(raw, &e.Metas); err != nil {
				return err
			}
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		if e.Extra == nil {
			e.Extra = make(map[string]any)
		}
		e.Extra[k] = v
	}
	return nil
}
