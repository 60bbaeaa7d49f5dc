package transport

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// A device changes its own presence meta the Phoenix way: the room sees one
// presence_diff in which the old meta leaves and the new one joins, with a
// new phx_ref and the old one as phx_ref_prev.
func TestAPresenceUpdateIsOneDiffOfTheOldMetaAndTheNew(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	ada, _ := join(t, ts, "plaza", "ada")
	bob, _ := join(t, ts, "plaza", "bob")
	waitFor(t, bob, "ada present", func(v *client.View) bool { return len(v.Presence["ada"]) == 1 })
	before := bob.View().Presence["ada"][0]
	waitUntil(t, "both published", func() bool {
		_, state := ts.registry.PresenceSnapshot(nil)
		return len(state["plaza"]) == 2
	})
	s := openRoomStream(t, ts, "plaza")
	s.await("the state", "presence_state", presenceUsers(stateOf, "ada", "bob"))

	if err := ada.UpdatePresence(ctx, map[string]any{"status": "away"}); err != nil {
		t.Fatal(err)
	}
	s.await("one diff with ada's old meta leaving and the new joining", "presence_diff", func(data string) bool {
		var d RoomPresenceDiff
		if json.Unmarshal([]byte(data), &d) != nil || len(d.Joins) != 1 || len(d.Leaves) != 1 {
			return false
		}
		left, joined := d.Leaves["ada"].Metas, d.Joins["ada"].Metas
		return len(left) == 1 && len(joined) == 1 &&
			left[0].Ref == before.Ref && left[0].Meta == nil &&
			joined[0].Ref != before.Ref && joined[0].PrevRef == before.Ref &&
			joined[0].Meta["status"] == "away" && joined[0].Name == before.Name
	})
	waitFor(t, bob, "ada away in bob's presence", func(v *client.View) bool {
		metas := v.Presence["ada"]
		return len(metas) == 1 && metas[0].Meta["status"] == "away"
	})
}

func TestAPresenceUpdateIsRefusedWhenItCannotBe(t *testing.T) {
	ts := startServer(t)
	ctx := testContext(t)
	outside := dial(t, ts)
	ada, _ := join(t, ts, "plaza", "ada")
	tests := []struct {
		name string
		c    *client.Client
		meta map[string]any
		code string
	}{
		{"outside a room", outside, map[string]any{"status": "away"}, codec.CodeNotJoined},
		{"over the meta's size", ada, map[string]any{"bio": strings.Repeat("z", rooms.MaxMetaBytes)}, codec.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rerr *client.RequestError
			if err := tt.c.UpdatePresence(ctx, tt.meta); !errors.As(err, &rerr) || rerr.Code != tt.code {
				t.Errorf("UpdatePresence: %v, want %s", err, tt.code)
			}
		})
	}
	if err := ada.UpdatePresence(ctx, nil); err != nil {
		t.Errorf("clearing the meta: %v", err)
	}
}
