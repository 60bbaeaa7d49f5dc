package rooms_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// fakeMember is the rooms.Member of these tests: it decodes and records
// every frame and datagram a room sends it. It is safe for concurrent use.
type fakeMember struct {
	t           testing.TB
	name        string
	maxDatagram int

	mu        sync.Mutex // guards the following
	frames    []codec.Message
	datagrams []datagram
	closed    bool // by the room, with a goodbye
}

// datagram is one pose update datagram as a member received it.
type datagram struct {
	raw  []byte   // the datagram as the member would send it
	runs [][]byte // the room's record runs themselves, to compare identity
	codec.PoseUpdate
	records []slotRecord
}

type slotRecord struct {
	slot int
	rec  []byte
}

func newMember(t testing.TB, name string) *fakeMember {
	return &fakeMember{t: t, name: name, maxDatagram: codec.MaxDatagramSize}
}

// SendFrame implements rooms.Member.
func (f *fakeMember) SendFrame(frame []byte) {
	if len(frame) < codec.FrameHeaderSize || int(binary.BigEndian.Uint32(frame)) != len(frame)-codec.FrameHeaderSize {
		f.t.Errorf("%s: badly framed message of %d bytes", f.name, len(frame))
		return
	}
	msg, err := codec.DecodeFromServer(frame[codec.FrameHeaderSize:])
	if err != nil {
		f.t.Errorf("%s: undecodable frame: %v", f.name, err)
		return
	}
	f.mu.Lock()
	f.frames = append(f.frames, msg)
	f.mu.Unlock()
}

// SendPoses implements rooms.Member: it takes each datagram of the update.
func (f *fakeMember) SendPoses(seq uint32, parts [][][]byte) {
	if len(parts) == 0 {
		f.takeDatagram(codec.AppendPoseUpdate(nil, seq, 0, 0, nil), nil)
	}
	for p, runs := range parts {
		f.takeDatagram(codec.AppendPoseUpdate(nil, seq, uint8(p), uint8(len(parts)), runs), runs)
	}
}

func (f *fakeMember) takeDatagram(b []byte, runs [][]byte) {
	u, err := codec.ParsePoseUpdate(b)
	if err != nil {
		f.t.Errorf("%s: bad datagram %x: %v", f.name, b, err)
		return
	}
	d := datagram{raw: b, runs: runs, PoseUpdate: u}
	for rest := u.Records; len(rest) > 0; {
		slot, rec, r, err := codec.NextRecord(rest)
		if err != nil {
			f.t.Errorf("%s: bad record in datagram %x: %v", f.name, b, err)
			return
		}
		if err := codec.CheckPose(rec); err != nil {
			f.t.Errorf("%s: bad pose record: %v", f.name, err)
		}
		d.records = append(d.records, slotRecord{int(slot), rec})
		rest = r
	}
	f.mu.Lock()
	f.datagrams = append(f.datagrams, d)
	f.mu.Unlock()
}

// Close implements rooms.Member: the goodbye is the last frame.
func (f *fakeMember) Close(g *codec.Goodbye) {
	f.mu.Lock()
	f.frames = append(f.frames, g)
	f.closed = true
	f.mu.Unlock()
}

// MaxDatagramSize implements rooms.Member.
func (f *fakeMember) MaxDatagramSize() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxDatagram
}

func (f *fakeMember) setMaxDatagram(n int) {
	f.mu.Lock()
	f.maxDatagram = n
	f.mu.Unlock()
}

// takeFrames returns the messages received since the last call.
func (f *fakeMember) takeFrames() []codec.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.frames
	f.frames = nil
	return out
}

// takeDatagrams returns the datagrams received since the last call.
func (f *fakeMember) takeDatagrams() []datagram {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.datagrams
	f.datagrams = nil
	return out
}

// take returns what was received since the last call, frames and datagrams.
func (f *fakeMember) take() ([]codec.Message, []datagram) {
	return f.takeFrames(), f.takeDatagrams()
}

// clear forgets everything received so far.
func (f *fakeMember) clear() { f.take() }

// only returns the messages of type T among msgs.
func only[T codec.Message](msgs []codec.Message) []T {
	var out []T
	for _, m := range msgs {
		if m, ok := m.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

// events returns the names of the events among msgs, in order.
func eventNames(msgs []codec.Message) []string {
	var out []string
	for _, e := range only[*codec.Event](msgs) {
		out = append(out, e.Name)
	}
	return out
}

// types returns the type of every message, in order.
func types(msgs []codec.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = fmt.Sprintf("%T", m)
	}
	return out
}

// testConfig is the configuration of most tests: the defaults, spelled out
// so that tests can reason in ticks, with stale marking off.
func testConfig() rooms.Config {
	return rooms.Config{
		Tick:           200 * time.Millisecond,
		RepeatTicks:    3,
		Heartbeat:      time.Second,
		StaleAfter:     time.Hour,
		ReconnectGrace: 5 * time.Second,
		EmptyGrace:     30 * time.Second,
		StoreTimeout:   time.Hour,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// world is one test's registry, made inside a synctest bubble.
type world struct {
	t     *testing.T
	cfg   rooms.Config
	store rooms.Store
	reg   *rooms.Registry
}

// inBubble runs f in a synctest bubble with a fresh registry on store (a new
// MemoryStore if nil), and closes the registry at the end of the bubble;
// synctest fails the test if a goroutine outlives it.
func inBubble(t *testing.T, cfg rooms.Config, store rooms.Store, f func(t *testing.T, w *world)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		if store == nil {
			store = &rooms.MemoryStore{}
		}
		reg, err := rooms.NewRegistry(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		f(t, &world{t: t, cfg: reg.Config(), store: store, reg: reg})
	})
}

// join joins member m to room as user (on device, if not empty) and returns
// its membership; it fails the test on error.
func (w *world) join(room, user string, m *fakeMember) *rooms.Membership {
	w.t.Helper()
	return w.joinReq(room, m, rooms.JoinRequest{User: user, Name: "name of " + user})
}

func (w *world) joinDevice(room, user, device string, m *fakeMember) *rooms.Membership {
	w.t.Helper()
	return w.joinReq(room, m, rooms.JoinRequest{User: user, Name: "name of " + user, Device: device})
}

func (w *world) joinReq(room string, m *fakeMember, req rooms.JoinRequest) *rooms.Membership {
	w.t.Helper()
	ms, err := w.reg.Join(context.Background(), room, m, req)
	if err != nil {
		w.t.Fatalf("join %s as %q: %v", room, req.User, err)
	}
	return ms
}

// ticks lets n ticks of the room pass (the rooms of a test start on tick
// boundaries, so all tick together) and waits until the room has settled.
func (w *world) ticks(n int) {
	time.Sleep(time.Duration(n) * w.cfg.Tick)
	synctest.Wait()
}

// entities reads a room's world back from the store.
func (w *world) entities(room string) map[string]rooms.Components {
	w.t.Helper()
	got, err := w.store.Entities(context.Background(), room)
	if err != nil {
		w.t.Fatalf("store entities of %s: %v", room, err)
	}
	return got
}

// num reads a number as msgpack decodes it.
func num(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}

// vec reads an n-vector component.
func vec(v any, n int) ([]float64, bool) {
	var out []float64
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			f, ok := num(e)
			if !ok {
				return nil, false
			}
			out = append(out, f)
		}
	case []float64:
		out = v
	default:
		return nil, false
	}
	return out, len(out) == n
}

// asJSON renders v as JSON, which forgets msgpack's integer widths, for
// comparing decoded values with what was sent.
func asJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	return string(b)
}

// pose returns a pose record with the head at (x, y, z).
func pose(time uint32, x, y, z float64) []byte {
	p := codec.Pose{Time: time, Head: codec.Transform{Position: [3]float64{x, y, z}, Rotation: codec.Identity.Rotation}}
	return codec.AppendPose(nil, &p)
}

// handsPose returns a pose record with head and both hands.
func handsPose(time uint32, x, y, z float64) []byte {
	p := codec.Pose{
		Time:     time,
		Head:     codec.Transform{Position: [3]float64{x, y, z}, Rotation: codec.Identity.Rotation},
		HasLeft:  true,
		Left:     codec.Transform{Position: [3]float64{x - 0.3, y - 0.5, z}, Rotation: codec.Identity.Rotation},
		HasRight: true,
		Right:    codec.Transform{Position: [3]float64{x + 0.3, y - 0.5, z}, Rotation: codec.Identity.Rotation},
	}
	return codec.AppendPose(nil, &p)
}

// metaRefs returns the phx_refs of the metas of key in entries.
func metaRefs(entries map[string]codec.PresenceEntry, key string) []string {
	var out []string
	for _, m := range entries[key].Metas {
		out = append(out, m.Ref)
	}
	return out
}

// gatedStore is a MemoryStore whose Apply can be held up, as a store that
// is down or slow would. It records the entities it applied changes to.
type gatedStore struct {
	rooms.MemoryStore

	mu    sync.Mutex // guards the following
	gate  chan struct{}
	down  bool
	tries int
	order []string
}

// setDown makes Apply fail, as a store that cannot be reached does, or
// work again.
func (s *gatedStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// attempts returns how many times Apply was called.
func (s *gatedStore) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries
}

// block makes Apply wait until release. Call it inside the bubble.
func (s *gatedStore) block() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) release() {
	s.mu.Lock()
	close(s.gate)
	s.gate = nil
	s.mu.Unlock()
}

// Apply implements rooms.Store. A held-up Apply ignores ctx, as a stuck
// network call might.
func (s *gatedStore) Apply(ctx context.Context, room string, claim rooms.Claim, changes []rooms.Change) error {
	s.mu.Lock()
	gate, down := s.gate, s.down
	s.tries++
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if down {
		return errors.New("store is down")
	}
	if err := s.MemoryStore.Apply(ctx, room, claim, changes); err != nil {
		return err
	}
	s.mu.Lock()
	for _, ch := range changes {
		s.order = append(s.order, ch.Entity)
	}
	s.mu.Unlock()
	return nil
}

// applied returns the entities of the changes applied so far, in order.
func (s *gatedStore) applied() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}
