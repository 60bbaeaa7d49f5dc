package codec

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A presence entry is one map on the wire, in msgpack and JSON alike:
// "metas" beside whatever the server's hook put there.
func TestAPresenceEntryCarriesItsExtraKeysBesideItsMetas(t *testing.T) {
	meta := PresenceMeta{Ref: "p1", Name: "Ada", OnlineAt: 1}
	tests := []struct {
		name string
		in   PresenceEntry
		want PresenceEntry
	}{
		{"metas alone", PresenceEntry{Metas: []PresenceMeta{meta}}, PresenceEntry{Metas: []PresenceMeta{meta}}},
		{"with a user's profile", PresenceEntry{Metas: []PresenceMeta{meta}, Extra: map[string]any{"user": map[string]any{"colour": "teal"}}},
			PresenceEntry{Metas: []PresenceMeta{meta}, Extra: map[string]any{"user": map[string]any{"colour": "teal"}}}},
		{"an extra metas key is not written", PresenceEntry{Metas: []PresenceMeta{meta}, Extra: map[string]any{"metas": "no"}}, PresenceEntry{Metas: []PresenceMeta{meta}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := &PresenceState{Header: Header{Type: TypePresenceState}, State: map[string]PresenceEntry{"ada": tt.in}}
			frame, err := AppendFrame(nil, msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(frame[4:])
			if err != nil {
				t.Fatal(err)
			}
			if e := got.(*PresenceState).State["ada"]; !reflect.DeepEqual(e, tt.want) {
				t.Errorf("msgpack: %+v, want %+v", e, tt.want)
			}
			b, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var back PresenceEntry
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.want) {
				t.Errorf("JSON %s: %+v, want %+v", b, back, tt.want)
			}
		})
	}
}
