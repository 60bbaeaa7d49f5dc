package rooms_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

func TestARoomThatStopsInAnOutageHandsItsChangesToItsNextInstance(t *testing.T) {
	store := &gatedStore{}
	cfg := testConfig()
	cfg.EmptyGrace = time.Second
	inBubble(t, cfg, store, func(t *testing.T, w *world) {
		alice := w.join("lobby", "alice", newMember(t, "alice"))
		store.setDown(true)
		crate := create(t, alice, rooms.Components{"crate": true})
		alice.Leave()
		w.ticks(10) // past the empty grace: the room stops, its change unwritten
		if w.reg.Room("lobby") != nil {
			t.Fatal("the empty room did not stop")
		}

		bob := newMember(t, "bob")
		joined := make(chan error, 1)
		go func() {
			_, err := w.reg.Join(context.Background(), "lobby", bob, rooms.JoinRequest{User: "bob"})
			joined <- err
		}()
		synctest.Wait()
		select {
		case err := <-joined:
			t.Fatalf("the room started again before its last change was written (join: %v)", err)
		default:
		}

		store.setDown(false)
		w.ticks(50) // past the longest backoff
		if err := <-joined; err != nil {
			t.Fatal(err)
		}
		states := only[*codec.EntitiesState](bob.takeFrames())
		if len(states) != 1 || states[0].Entities[crate] == nil {
			t.Errorf("the new instance of the room lacks the crate created before it stopped")
		}
	})
}

// The stale flag is shown on the driving device's meta. A device that
// joins beside a stale one changes nothing until it sends; then it drives
// and the avatar recovers, while the device that stopped keeps its flag
// until it sends again.
func TestAStaleFlagStaysOnTheDeviceThatStopped(t *testing.T) {
	cfg := testConfig()
	cfg.StaleAfter = time.Second
	inBubble(t, cfg, nil, func(t *testing.T, w *world) {
		laptop := w.joinDevice("lobby", "alice", "laptop", newMember(t, "laptop"))
		w.ticks(10) // no poses: the avatar goes stale
		watcher := newMember(t, "watcher")
		w.join("lobby", "watcher", watcher)
		if !staleMetas(t, watcher, "alice") {
			t.Fatal("alice's laptop is not marked stale")
		}
		headset := w.joinDevice("lobby", "alice", "headset", newMember(t, "headset"))
		w.ticks(1)
		if names := eventNames(watcher.takeFrames()); contains(names, codec.EventUserRecovered) {
			t.Errorf("a device joining beside a stale one made %v", names)
		}
		if _, err := headset.UpdatePose(pose(1, 1, 1, 1)); err != nil {
			t.Fatalf("the headset's first pose: %v", err)
		}
		w.ticks(1)
		late := newMember(t, "late")
		w.join("lobby", "late", late)
		if got := staleDevices(t, late, "alice"); !got["laptop"] || got["headset"] {
			t.Errorf("alice's devices stale: %v, want the laptop alone", got)
		}
		if names := eventNames(watcher.takeFrames()); !contains(names, codec.EventUserRecovered) {
			t.Errorf("the watcher got %v, want user_recovered", names)
		}

		if _, err := laptop.UpdatePose(pose(2, 2, 2, 2)); !errors.Is(err, rooms.ErrNotDriver) {
			t.Errorf("the laptop's pose while the headset drives: %v", err)
		}
		w.ticks(1)
		later := newMember(t, "later")
		w.join("lobby", "later", later)
		if got := staleDevices(t, later, "alice"); got["laptop"] || got["headset"] {
			t.Errorf("alice's devices stale: %v, want none once the laptop sent", got)
		}
	})
}

// staleDevices returns, by device, whether its meta of key in the last
// presence_state m received is stale.
func staleDevices(t *testing.T, m *fakeMember, key string) map[string]bool {
	t.Helper()
	states := only[*codec.PresenceState](m.takeFrames())
	if len(states) == 0 {
		t.Fatal("no presence_state")
	}
	out := make(map[string]bool)
	for _, meta := range states[len(states)-1].State[key].Metas {
		out[meta.Device] = meta.Stale
	}
	return out
}

// staleMetas reports whether any meta of key in the presence_state m
// received is stale.
func staleMetas(t *testing.T, m *fakeMember, key string) bool {
	t.Helper()
	states := only[*codec.PresenceState](m.takeFrames())
	if len(states) == 0 {
		t.Fatal("no presence_state")
	}
	for _, meta := range states[len(states)-1].State[key].Metas {
		if meta.Stale {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func TestTheLeaverHearsNothingOfItsOwnLeaving(t *testing.T) {
	inBubble(t, testConfig(), nil, func(t *testing.T, w *world) {
		bob := newMember(t, "bob")
		leaver := newMember(t, "leaver")
		w.join("lobby", "bob", bob)
		m := w.join("lobby", "leaver", leaver)
		w.ticks(1)
		leaver.clear()
		bob.clear()
		m.Leave()
		w.ticks(1)
		if got := leaver.takeFrames(); len(got) != 0 {
			t.Errorf("the leaver got %v", types(got))
		}
		if names := eventNames(bob.takeFrames()); !contains(names, codec.EventUserLeft) {
			t.Errorf("bob got %v, want user_left", names)
		}
	})
}
