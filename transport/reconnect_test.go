package transport

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

// defaultTimings runs a test server on every default timing: tick, QUIC
// idle timeout, reconnect grace and stale-after.
func defaultTimings(_ *Config, r *rooms.Config) { r.Tick = 0 }

// joinDevice joins room as user on a device of that name, on a session of
// its own, with meta in its presence meta.
func joinDevice(t *testing.T, ts *testServer, room, user, device string, meta ...map[string]any) (*client.Client, *codec.Joined) {
	t.Helper()
	c := dial(t, ts)
	j := codec.Join{Room: room, Name: "name of " + user, Device: device, Token: token(t, ts, room, user)}
	if len(meta) > 0 {
		j.Meta = meta[0]
	}
	joined, err := c.Join(testContext(t), j)
	if err != nil {
		t.Fatalf("join %s as %s on %s: %v", room, user, device, err)
	}
	return c, joined
}

// sendPoses sends a moving pose from c every 50 ms, numbered from 1, until
// stop, which returns the number of the last pose sent.
func sendPoses(c *client.Client) (stop func() uint32) {
	done := make(chan struct{})
	var n uint32
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			n++
			c.SendPose(pose(n, float64(n)/100, 1.6, 0))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint32 {
		close(done)
		wg.Wait()
		return n
	}
}

// observe calls f with each view of c it sees until stop. Views that follow
// each other closely may be seen as one.
func observe(c *client.Client, f func(*client.View)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		c.WaitFor(ctx, func(v *client.View) bool { f(v); return false })
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// With the default timings, a client that loses its connection and comes
// back within the reconnect grace resumes its avatar, and no one sees it
// leave: whether the server still holds its old session (back before the
// idle timeout) or has noticed the drop. Back after the grace, it is a new
// arrival. One user per delay, all dropped at once and each back at its
// delay after its drop, so that the test takes the longest delay; the last
// pose went just before the drop.
func TestAReconnectAtTheDefaultTimings(t *testing.T) {
	t.Parallel()
	ts := startServer(t, defaultTimings)
	cfg := ts.registry.Config()
	if cfg.ReconnectGrace != 15*time.Second || ts.cfg.IdleTimeout != 5*time.Second || cfg.Tick != 200*time.Millisecond {
		t.Fatalf("the defaults are a %v grace, a %v idle timeout and a %v tick: this test's delays are for 15s, 5s and 200ms", cfg.ReconnectGrace, ts.cfg.IdleTimeout, cfg.Tick)
	}
	type user struct {
		delay  time.Duration
		inside bool
		id     string
		quest  *client.Client
		joined *codec.Joined
		stop   func() uint32
		drop   time.Time
	}
	users := []*user{
		{delay: 500 * time.Millisecond, inside: true},  // a browser's first retry of a lost connection it noticed
		{delay: 4500 * time.Millisecond, inside: true}, // the server still holds the old session
		{delay: 5500 * time.Millisecond, inside: true}, // around the idle timeout
		{delay: 6500 * time.Millisecond, inside: true}, // the server has noticed: the device is held
		{delay: 14 * time.Second, inside: true},
		{delay: 15500 * time.Millisecond}, // the grace and its tick are over
	}
	watcher, _ := join(t, ts, "lobby", "watcher")
	for _, u := range users {
		u.id = "ada-" + u.delay.String()
		u.quest, u.joined = joinDevice(t, ts, "lobby", u.id, "quest")
		u.stop = sendPoses(u.quest)
	}
	waitFor(t, watcher, "everyone present", func(v *client.View) bool { return len(v.Presence) == len(users)+1 })
	time.Sleep(300 * time.Millisecond)
	for _, u := range users {
		u.stop()
		u.quest.Abort()
		u.drop = time.Now()
	}
	for _, u := range users {
		time.Sleep(time.Until(u.drop.Add(u.delay)))
		again, j := joinDevice(t, ts, "lobby", u.id, "quest")
		if j.Resumed != u.inside || (u.inside && j.Slot != u.joined.Slot) {
			t.Errorf("back after %v: resumed %v in slot %d, want resumed %v (slot %d)", u.delay, j.Resumed, j.Slot, u.inside, u.joined.Slot)
		}
		waitFor(t, watcher, u.id+" on the new session alone", func(v *client.View) bool {
			metas := v.Presence[u.id]
			return len(metas) == 1 && metas[0].Ref == j.PresenceRef
		})
		if err := again.SendPose(pose(9999, 2, 1.6, 2)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, watcher, u.id+" moved by the new session", func(v *client.View) bool { return v.Poses[u.id].Time == 9999 })
	}
	v := watcher.View()
	for _, u := range users {
		left, joined := len(eventsNamed(&v, codec.EventUserLeft, u.id)), len(eventsNamed(&v, codec.EventUserJoined, u.id))
		switch {
		case u.inside && (left != 0 || joined != 1):
			t.Errorf("back after %v: the watcher saw the user leave %d times and join %d times, want 0 and 1", u.delay, left, joined)
		case !u.inside && (left != 1 || joined != 2):
			t.Errorf("back after %v: the watcher saw the user leave %d times and join %d times, want 1 and 2", u.delay, left, joined)
		}
	}
}

// A device whose connection died does not look alive again when its user
// comes back: back on the same device, the new session replaces the dead
// one at once (one device listed, never the dead one fresh); back on
// another device, the dead one stays stale until its grace ends.
func TestADeadDeviceDoesNotLookAliveAtTheDefaultTimings(t *testing.T) {
	t.Parallel()
	for _, device := range []string{"quest", "laptop"} {
		t.Run("back on "+device, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, defaultTimings)
			watcher, _ := join(t, ts, "lobby", "watcher")
			quest, _ := joinDevice(t, ts, "lobby", "ada", "quest")
			stop := sendPoses(quest)
			waitFor(t, watcher, "ada moving", func(v *client.View) bool { return v.Poses["ada"].Time > 2 })
			stop()
			quest.Abort()
			var deadRef string
			waitFor(t, watcher, "ada stale", func(v *client.View) bool {
				metas := v.Presence["ada"]
				if len(metas) == 1 && metas[0].Stale {
					deadRef = metas[0].Ref
					return true
				}
				return false
			})

			var mu sync.Mutex
			var twice bool
			var seen []codec.PresenceMeta
			stopWatching := observe(watcher, func(v *client.View) {
				mu.Lock()
				defer mu.Unlock()
				metas := v.Presence["ada"]
				twice = twice || (device == "quest" && len(metas) > 1)
				seen = append(seen, metas...)
			})
			// The new session's metas say so, whatever their refs become.
			again, j2 := joinDevice(t, ts, "lobby", "ada", device, map[string]any{"session": "new"})
			if j2.Resumed != (device == "quest") {
				t.Errorf("back on %s: resumed %v", device, j2.Resumed)
			}
			if device == "quest" {
				waitFor(t, watcher, "the new session listed alone", func(v *client.View) bool {
					metas := v.Presence["ada"]
					return len(metas) == 1 && metas[0].Ref == j2.PresenceRef
				})
			} else {
				waitFor(t, watcher, "the laptop listed", func(v *client.View) bool { return len(v.Presence["ada"]) == 2 })
			}
			time.Sleep(1500 * time.Millisecond) // past stale-after: the dead quest's meta must not change meanwhile
			if err := again.SendPose(pose(9999, 2, 1.6, 2)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, watcher, "ada moved by the new session", func(v *client.View) bool { return v.Poses["ada"].Time == 9999 })
			time.Sleep(500 * time.Millisecond)
			stopWatching()
			v := watcher.View()
			if device == "laptop" {
				metas := v.Presence["ada"]
				if len(metas) != 2 || metas[0].Ref != deadRef || !metas[0].Stale || metas[1].Ref != j2.PresenceRef || metas[1].Stale {
					t.Errorf("ada's metas %+v, want the quest's stale meta %s and the laptop's fresh one", metas, deadRef)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range seen {
				if m.Meta["session"] != "new" && m.Ref != deadRef {
					t.Errorf("the dead quest's meta changed to %+v", m)
				}
			}
			if twice {
				t.Errorf("the dead quest was listed beside its new session")
			}
			if !hasEvent(&v, codec.EventUserRecovered, "ada") || hasEvent(&v, codec.EventUserLeft, "ada") {
				t.Errorf("events %v, want ada recovered and never left", v.Events)
			}
		})
	}
}

// A second device of a user that sends no poses does not take the avatar
// from the device that sends them.
func TestASilentSecondDeviceDoesNotTakeOver(t *testing.T) {
	t.Parallel()
	ts := startServer(t, defaultTimings)
	watcher, _ := join(t, ts, "lobby", "watcher")
	quest, _ := joinDevice(t, ts, "lobby", "ada", "quest")
	stop := sendPoses(quest)
	defer stop()
	waitFor(t, watcher, "ada moving", func(v *client.View) bool { return v.Poses["ada"].Time > 2 })
	joinDevice(t, ts, "lobby", "ada", "laptop")
	waitFor(t, watcher, "the laptop listed", func(v *client.View) bool { return len(v.Presence["ada"]) == 2 })
	from := watcher.View().Poses["ada"].Time
	// The quest sends 20 poses a second: in 1.5 s, 30 more, far past 20.
	waitFor(t, watcher, "the quest's poses still moving ada", func(v *client.View) bool { return v.Poses["ada"].Time > from+20 })
	if v := watcher.View(); hasEvent(&v, codec.EventUserStale, "ada") {
		t.Errorf("ada went stale while the quest sent: %v", v.Events)
	}
}
