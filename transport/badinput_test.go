package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/transport/client"
)

func (ts *testServer) rejected(reason string) float64 {
	return testutil.ToFloat64(ts.metrics.rejected.WithLabelValues(reason))
}

func (ts *testServer) disconnected(reason CloseReason) float64 {
	return testutil.ToFloat64(ts.metrics.disconnects.WithLabelValues(reason.String()))
}

// roomGoesOn checks that the room still works for honest members: a pose
// sent by one reaches the other. The stamp also sets the position, since a
// pose in the same place as the last is not sent again.
func roomGoesOn(t *testing.T, sender, receiver *client.Client, stamp uint32) {
	t.Helper()
	if err := sender.SendPose(pose(stamp, float64(stamp), 2, 3)); err != nil {
		t.Fatal(err)
	}
	user := sender.View().User
	waitFor(t, receiver, "the room goes on", func(v *client.View) bool { return v.Poses[user].Time == stamp })
}

func TestGarbageDatagramsAreCountedAndIgnored(t *testing.T) {
	ts := startServer(t)
	honest, _ := join(t, ts, "lobby", "honest")
	watcher, _ := join(t, ts, "lobby", "watcher")
	offender, _ := join(t, ts, "lobby", "offender")
	if err := offender.SendPose(pose(1, 0, 1, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the offender's honest pose", func(v *client.View) bool { return v.Poses["offender"].Time == 1 })

	rng := rand.New(rand.NewPCG(3, 4))
	good := codec.AppendPoseDatagram(nil, pose(2, 9, 9, 9))
	garbage := [][]byte{
		{},
		{0xff},
		{0x92, 0x01},                         // pose datagram without its record
		good[:len(good)-3],                   // truncated record
		append([]byte{0x92, 0x07}, good...),  // unknown kind
		append(append([]byte{}, good...), 0), // trailing byte
		{0x92, 0x01, 0xc4, 0x12, 0xff},       // flags with unknown bits
	}
	for range 50 {
		b := make([]byte, 1+rng.IntN(200))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		garbage = append(garbage, b)
	}
	before := ts.rejected(rejectBadDatagram)
	for _, g := range garbage {
		offender.SendDatagram(g)
		time.Sleep(2 * time.Millisecond) // a burst would overflow QUIC's receive queue
	}
	roomGoesOn(t, honest, watcher, 3)
	// Datagrams are unordered; wait until the server has seen them all.
	waitUntil(t, "garbage counted", func() bool { return ts.rejected(rejectBadDatagram)-before >= float64(len(garbage)-1) })
	if p := watcher.View().Poses["offender"]; p.Time != 1 {
		t.Errorf("garbage moved the offender to %+v", p)
	}
	// The offender is still welcome.
	if _, err := offender.Request(testContext(t), &codec.Ping{}); err != nil {
		t.Errorf("offender after garbage: %v", err)
	}
}

func TestOversizeControlMessageClosesOnlyThatSession(t *testing.T) {
	ts := startServer(t, func(c *Config, _ *rooms.Config) { c.MaxMessage = 4096 })
	honest, _ := join(t, ts, "lobby", "honest")
	watcher, _ := join(t, ts, "lobby", "watcher")
	offender, _ := join(t, ts, "lobby", "offender")
	// A huge length prefix is refused before its body is read.
	var frame [4]byte
	binary.BigEndian.PutUint32(frame[:], 1<<31)
	if err := offender.SendRaw(frame[:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, offender, "the offender's goodbye", func(v *client.View) bool { return v.Goodbye != nil })
	if g := offender.View().Goodbye; g.Code != codec.CodeTooLarge {
		t.Errorf("goodbye %+v, want %s", g, codec.CodeTooLarge)
	}
	<-offender.Done()
	waitFor(t, watcher, "the offender is gone", func(v *client.View) bool { return v.Presence["offender"] == nil })
	roomGoesOn(t, honest, watcher, 4)
	waitUntil(t, "the close counted", func() bool { return ts.disconnected(CloseTooLarge) == 1 })
}

func TestMalformedControlMessagesGetAnErrorAndTheSessionGoesOn(t *testing.T) {
	ts := startServer(t)
	c, _ := join(t, ts, "lobby", "ada")
	tests := []struct {
		name string
		body []byte
		ref  uint32 // the ref the error answers with: the message's, when it can be read
	}{
		{"not msgpack", []byte{0xc1, 0xc1}, 0},
		{"truncated msgpack", marshal(t, map[string]any{"type": "event", "name": "x", "ref": 40})[:6], 0},
		{"unknown type", marshal(t, map[string]any{"type": "teleport", "to": "bob", "ref": 41}), 41},
		{"a server message", marshal(t, map[string]any{"type": "welcome", "ref": 42}), 42},
		{"nesting 200 deep", append(marshal(t, map[string]any{"type": "event", "name": "deep"})[:1:1], bytes.Repeat([]byte{0x91}, 200)...), 0},
		{"wrong field type", marshal(t, map[string]any{"type": "create", "components": "lots", "ref": 43}), 43},
		{"a ref past 32 bits", marshal(t, map[string]any{"type": "leave", "ref": int64(1) << 40}), 0},
		{"a map of a million entries in ten bytes", []byte{0xdf, 0x00, 0x0f, 0x42, 0x40, 0xa1, 'x', 0xc0}, 0},
		{"nesting too deep after the ref", append([]byte{0x82, 0xa3, 'r', 'e', 'f', 44, 0xa4, 'd', 'a', 't', 'a'}, bytes.Repeat([]byte{0x91}, 200)...), 44},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errorsBefore := len(c.View().Errors)
			if err := c.SendRaw(frameOf(tt.body)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, "an error answer", func(v *client.View) bool { return len(v.Errors) > errorsBefore })
			if e := c.View().Errors[errorsBefore]; e.Code != codec.CodeBadMessage && e.Code != codec.CodeTooLarge || e.Ref != tt.ref {
				t.Errorf("error %+v, want %s or %s with ref %d", e, codec.CodeBadMessage, codec.CodeTooLarge, tt.ref)
			}
			if _, err := c.Request(testContext(t), &codec.Ping{Time: int64(i)}); err != nil {
				t.Fatalf("session after %s: %v", tt.name, err)
			}
		})
	}
}

func TestAMessageBeforeHelloEndsTheSession(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts)
	// The client said hello in Dial; a raw second session without it:
	raw := dialRaw(t, ts)
	f, err := codec.EncodeFrame(&codec.Join{Room: "lobby"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write(f); err != nil {
		t.Fatal(err)
	}
	body, err := codec.ReadFrame(raw, nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	m, err := codec.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := m.(*codec.Goodbye); !ok || g.Code != codec.CodeNoHello {
		t.Errorf("answer %#v, want goodbye %s", m, codec.CodeNoHello)
	}
	if _, err := c.Request(testContext(t), &codec.Ping{}); err != nil {
		t.Errorf("another session: %v", err)
	}
}

func TestNoOneMovesAnotherUsersAvatar(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	victim, _ := join(t, ts, "lobby", "victim")
	if err := victim.SendPose(pose(1, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the victim's pose", func(v *client.View) bool { return v.Poses["victim"].Time == 1 })
	attacker, _ := join(t, ts, "lobby", "attacker")
	ctx := testContext(t)

	var reqErr *client.RequestError
	_, err := attacker.Request(ctx, &codec.Update{Entity: "victim", Components: codec.Components{"position": []any{50.0, 50.0, 50.0}}})
	if !errors.As(err, &reqErr) || reqErr.Code != codec.CodeForbidden {
		t.Errorf("updating another avatar: %v, want %s", err, codec.CodeForbidden)
	}
	_, err = attacker.Request(ctx, &codec.Delete{Entity: "victim"})
	if !errors.As(err, &reqErr) || reqErr.Code != codec.CodeForbidden {
		t.Errorf("deleting another avatar: %v, want %s", err, codec.CodeForbidden)
	}
	_, err = attacker.Request(ctx, &codec.Create{Components: codec.Components{"avatar": true, "user": "victim"}})
	if !errors.As(err, &reqErr) || reqErr.Code != codec.CodeForbidden {
		t.Errorf("creating a fake avatar: %v, want %s", err, codec.CodeForbidden)
	}
	// A session not in the room moves nothing with its poses.
	outsider := dial(t, ts)
	before := ts.rejected(rejectNotJoined)
	outsider.SendPose(pose(99, 50, 50, 50))
	waitUntil(t, "the outsider's pose counted", func() bool { return ts.rejected(rejectNotJoined) > before })

	roomGoesOn(t, attacker, watcher, 7)
	if p := watcher.View().Poses["victim"]; p.Time != 1 || !near(p.Head.Position, [3]float64{1, 1, 1}) {
		t.Errorf("the victim moved to %+v", p)
	}
	if e := watcher.View().Entities["victim"]; e == nil || e["avatar"] != true {
		t.Errorf("the victim's avatar is now %v", e)
	}
}

func TestOnlyTheDeviceThatSendsMovesTheAvatar(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	first, _ := join(t, ts, "lobby", "ada")
	second, _ := join(t, ts, "lobby", "ada")
	if err := first.SendPose(pose(5, 5, 5, 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the first device's pose", func(v *client.View) bool { return v.Poses["ada"].Time == 5 })
	before := ts.rejected(rejectNotDriver)
	if err := second.SendPose(pose(6, 6, 6, 6)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the second device's pose refused", func() bool { return ts.rejected(rejectNotDriver) > before })
	first.Close()
	waitUntil(t, "the server to see the first device's session end", func() bool { return ts.Sessions() == 2 })
	if err := second.SendPose(pose(7, 7, 7, 7)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watcher, "the second device drives once the first is gone", func(v *client.View) bool { return v.Poses["ada"].Time == 7 })
}

func TestExtraStreamsAreResetAndTheSessionGoesOn(t *testing.T) {
	ts := startServer(t)
	c, _ := join(t, ts, "lobby", "ada")
	ctx := testContext(t)
	str, err := c.Session().OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The server stops reading the stream at once: writing into it fails
	// instead of filling the server's buffers.
	chunk := make([]byte, 64<<10)
	var werr error
	for range 64 {
		if _, werr = str.Write(chunk); werr != nil {
			break
		}
	}
	if werr == nil {
		t.Error("4 MiB went into a stream the server should have reset")
	}
	if _, err := c.Request(ctx, &codec.Ping{}); err != nil {
		t.Fatalf("the session after an extra stream: %v", err)
	}
}

func TestADecodeBombIsRefusedBeforeItIsDecoded(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts) // said hello, joined nothing
	emptyMaps := make([]any, 65000)
	for i := range emptyMaps {
		emptyMaps[i] = map[string]any{}
	}
	tests := []struct {
		name string
		body []byte
		code string
	}{
		// Outside a room a room operation is refused by its type: its
		// payload, here one that would not even decode, is never read.
		{"a room operation outside a room", marshal(t, map[string]any{"type": "create", "ref": 5, "components": "not a map"}), codec.CodeNotJoined},
		// Past the items a decode may allocate for, a message is refused
		// whole, in or out of a room.
		{"65 000 empty maps", marshal(t, map[string]any{"type": "ping", "ref": 6, "t": 1, "x": emptyMaps}), codec.CodeTooLarge},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errorsBefore := len(c.View().Errors)
			if err := c.SendRaw(frameOf(tt.body)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, "an error answer", func(v *client.View) bool { return len(v.Errors) > errorsBefore })
			if e := c.View().Errors[errorsBefore]; e.Code != tt.code || e.Ref != uint32(5+i) {
				t.Errorf("error %+v, want %s with ref %d", e, tt.code, 5+i)
			}
			if _, err := c.Request(testContext(t), &codec.Ping{Time: int64(i)}); err != nil {
				t.Fatalf("session after %s: %v", tt.name, err)
			}
		})
	}
}

func TestASessionThatKeepsOpeningStreamsIsClosed(t *testing.T) {
	ts := startServer(t)
	watcher, _ := join(t, ts, "lobby", "watcher")
	c, _ := join(t, ts, "lobby", "churner")
	ctx := testContext(t)
	for i := range 200 {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		str, err := c.Session().OpenStreamSync(octx) // as the server grants more
		cancel()
		if err != nil {
			break // the session is closed
		}
		str.Write([]byte{byte(i)})
		str.Close()
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("a session that opened 200 streams is still open")
	}
	if g := c.View().Goodbye; g == nil || g.Code != codec.CodeBadMessage {
		t.Errorf("goodbye %+v, want %s", g, codec.CodeBadMessage)
	}
	if _, err := watcher.Request(ctx, &codec.Ping{}); err != nil {
		t.Errorf("the others after the churner: %v", err)
	}
}

func TestAClientThatClosesIsCountedAsClosingNormally(t *testing.T) {
	ts := startServer(t)
	for i := range 5 {
		c, _ := join(t, ts, "lobby", fmt.Sprint("u", i))
		c.Close()
	}
	waitUntil(t, "five sessions ended", func() bool {
		return ts.disconnected(CloseNormal)+ts.disconnected(CloseClientGone) == 5
	})
	if n := ts.disconnected(CloseClientGone); n != 0 {
		t.Errorf("%v of five clients that closed their sessions were counted as gone", n)
	}
}

func TestAPingsTimeIsEchoedAsItCame(t *testing.T) {
	ts := startServer(t)
	c := dial(t, ts)
	for _, stamp := range []any{uint64(math.MaxUint64), int64(-5), "t0", 1.5} {
		reply, err := c.Request(testContext(t), &codec.Ping{Time: stamp})
		if err != nil {
			t.Fatal(err)
		}
		if got := reply.(*codec.Pong).Time; fmt.Sprint(got) != fmt.Sprint(stamp) {
			t.Errorf("ping %v (%T) echoed as %v (%T)", stamp, stamp, got, got)
		}
	}
}
