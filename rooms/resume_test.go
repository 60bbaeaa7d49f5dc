package rooms_test

import (
	"context"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// A user is on "quest" and "phone"; the quest drops (held). A third,
// differently named device "laptop" joins: it is a new device, and
// must not resume the quest's held presence, which the quest's own
// reconnect takes over.
func TestANamedDeviceNeverTakesOverAnotherNamedDevice(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		quest := w.joinDevice("r", "ada", "quest", newMember(t, "quest"))
		w.joinDevice("r", "ada", "phone", newMember(t, "phone"))
		quest.Disconnect(time.Now())
		lm := newMember(t, "laptop")
		w.joinDevice("r", "ada", "laptop", lm)
		joined := only[*codec.Joined](lm.takeFrames())[0]
		qm := newMember(t, "quest2")
		if _, err := w.reg.Join(context.Background(), "r", qm, rooms.JoinRequest{User: "ada", Device: "quest"}); err != nil {
			t.Fatal(err)
		}
		if !only[*codec.Joined](qm.takeFrames())[0].Resumed {
			t.Error("the quest's reconnect within its grace did not resume it")
		}
		if joined.Resumed {
			t.Errorf("device %q resumed the held device %q", "laptop", "quest")
		}
	})
}
