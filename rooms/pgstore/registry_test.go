package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/pgstore"
)

// member is a rooms.Member that ignores what rooms send it.
type member struct{}

func (member) SendPoses(uint32, [][][]byte) {}
func (member) SendFrame([]byte)             {}
func (member) MaxDatagramSize() int         { return 1200 }
func (member) Close(*codec.Goodbye)         {}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newRegistry returns a registry on s that is closed when t ends. Its logs
// are discarded unless cfg has a logger.
func newRegistry(t *testing.T, s rooms.Store, cfg rooms.Config) *rooms.Registry {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	reg, err := rooms.NewRegistry(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

// asJSON normalizes a value through JSON, so that values compare as the
// store keeps them.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestASecondOpenAppliesNoMigration(t *testing.T) {
	url := pgtest.Database(t)
	first := open(t, url)
	if len(first.Applied()) == 0 {
		t.Fatal("the first open of an empty database applied no migration")
	}
	second := open(t, url)
	if got := second.Applied(); len(got) != 0 {
		t.Errorf("the second open applied %v", got)
	}
}

func TestConcurrentOpensApplyEachMigrationOnce(t *testing.T) {
	url := pgtest.Database(t)
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Go(func() {
			s, err := pgstore.Open(testContext(t), url)
			if err != nil {
				t.Error(err)
				return
			}
			applied[i] = len(s.Applied())
			s.Close()
		})
	}
	wg.Wait()
	total, withAny := 0, 0
	for _, n := range applied {
		total += n
		if n > 0 {
			withAny++
		}
	}
	if withAny != 1 {
		t.Errorf("%d of the opens applied migrations (%v), want 1", withAny, applied)
	}
	var rows int
	if err := queryRow(t, url, &rows, "SELECT count(*) FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if rows != total {
		t.Errorf("%d migrations recorded, %d applied", rows, total)
	}
}

func TestOpenRefusesASchemaNewerThanItKnows(t *testing.T) {
	url := pgtest.Database(t)
	open(t, url)
	if err := execSQL(t, url, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')"); err != nil {
		t.Fatal(err)
	}
	if s, err := pgstore.Open(testContext(t), url); err == nil {
		s.Close()
		t.Error("Open accepted a schema newer than it knows")
	}
}

func TestOpenWithoutAServerFails(t *testing.T) {
	// A port that was free a moment ago: nothing answers there.
	url := "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	if s, err := pgstore.Open(testContext(t), url); err == nil {
		s.Close()
		t.Error("Open succeeded with no server")
	}
}

func TestDescribeHidesThePassword(t *testing.T) {
	got := pgstore.Describe("postgres://ada:secret@db.example:6432/rooms?sslmode=disable")
	if want := "postgres://ada@db.example:6432/rooms"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

// TestRoomsLastAcrossRestarts creates rooms and changes entities through a
// room, stops everything, and starts again on the same database.
func TestRoomsLastAcrossRestarts(t *testing.T) {
	url := pgtest.Database(t)
	ctx := testContext(t)

	s1 := open(t, url)
	reg1 := newRegistry(t, s1, rooms.Config{})
	lobby, err := reg1.CreateRoom(ctx, "Lobby")
	if err != nil {
		t.Fatal(err)
	}
	m, err := reg1.Join(ctx, "hall", member{}, rooms.JoinRequest{User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	door, err := m.CreateEntity(rooms.Components{"door": map[string]any{"open": false}, "position": []any{1.0, 0.0, 2.5}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lamp, err := m.CreateEntity(rooms.Components{"lamp": true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateEntity(door, rooms.Components{"door": map[string]any{"open": true}, "opened_by": "ada"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteEntity(lamp, nil); err != nil {
		t.Fatal(err)
	}
	hall, err := reg1.DescribeRoom(ctx, "hall")
	if err != nil {
		t.Fatal(err)
	}
	m.Leave()
	reg1.Close()
	s1.Close()

	s2 := open(t, url)
	if got := s2.Applied(); len(got) != 0 {
		t.Errorf("the restart applied migrations %v", got)
	}
	reg2 := newRegistry(t, s2, rooms.Config{})
	list, err := reg2.ListRooms(ctx, rooms.RoomCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID+" "+r.Name)
	}
	if want := []string{lobby.ID + " Lobby", "hall hall"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("rooms after the restart %v, want %v", ids, want)
	}
	tests := []struct {
		name string
		id   string
		want map[string]rooms.Components
	}{
		{"a room made by the API keeps its content", lobby.ID, lobby.Entities},
		{"a room made by a join keeps what was done in it", "hall", hall.Entities},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reg2.DescribeRoom(ctx, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := asJSON(t, got.Entities), asJSON(t, tt.want); !reflect.DeepEqual(g, w) {
				t.Errorf("entities after the restart\n%v\nwant\n%v", g, w)
			}
		})
	}
	if got := asJSON(t, hall.Entities[door]); !reflect.DeepEqual(got, asJSON(t, map[string]any{"door": map[string]any{"open": true}, "opened_by": "ada", "position": []any{1, 0, 2.5}})) {
		t.Errorf("the door is %v", got)
	}
	if _, ok := hall.Entities[lamp]; ok {
		t.Error("the deleted lamp is back")
	}
	// The room starts again from the store.
	m2, err := reg2.Join(ctx, "hall", member{}, rooms.JoinRequest{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.UpdateEntity(door, rooms.Components{"opened_by": "bob"}, nil); err != nil {
		t.Errorf("update a stored entity: %v", err)
	}
}

// auditSQL records, in the test's database, every write to a component in
// the order the database applied it.
const auditSQL = `
CREATE TABLE audit (id bigserial PRIMARY KEY, entity_id text, component_name text, value jsonb);
CREATE FUNCTION audit_component() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO audit (entity_id, component_name, value) VALUES (NEW.entity_id, NEW.component_name, NEW.value);
	RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON components FOR EACH ROW EXECUTE FUNCTION audit_component();
`

// The syncer's log messages that the outage tests watch for.
const (
	msgSyncFailed    = "store sync failed; retrying with backoff"
	msgSyncRecovered = "store sync recovered"
	msgNotWritten    = "store sync: changes not written at shutdown"
)

// logRecorder is a slog.Handler that keeps every record, debug ones too, so
// that a test sees what the syncer did.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// WithAttrs and WithGroup drop what they are given: the tests look at the
// attributes of the records alone.
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// find returns the records with the message msg, oldest first.
func (h *logRecorder) find(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.records {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

// await waits until n records with the message msg are kept and returns
// them, or fails t.
func (h *logRecorder) await(t *testing.T, msg string, n int) []slog.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.find(msg)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %q logged in 5s, want %d", len(got), msg, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// attr returns the attribute key of r, or the zero Value.
func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// awaitDrained waits until no change of reg waits for the store, or fails t.
func awaitDrained(t *testing.T, reg *rooms.Registry, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for reg.PendingChanges() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes still wait for the store after %v", reg.PendingChanges(), within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// outage makes the database at url refuse every connection, its pool's
// included, until the returned function is called (or the test ends).
func outage(t *testing.T, url string) (restore func()) {
	t.Helper()
	pgtest.Refuse(t, url)
	var once sync.Once
	restore = func() { once.Do(func() { pgtest.Allow(t, url) }) }
	t.Cleanup(restore)
	return restore
}

// Phases of an outage test.
const (
	beforeOutage = iota
	duringOutage // from the call to Refuse to the call to Allow
	afterOutage
	phases
)

// editor changes a room's entities through a membership from its own
// goroutine, about once a millisecond, and keeps what the room acknowledged
// and what it refused. Every change sets an entity's "n" to the change's
// number, so the values of each entity rise in the order they were made.
type editor struct {
	m       *rooms.Membership
	lamp    string       // deleted during the outage
	phase   atomic.Int32 // set by the test
	stop    chan struct{}
	halting sync.Once
	done    chan struct{}

	// Changes acknowledged and refused, by phase.
	ackedIn, refusedIn [phases]atomic.Int64

	// Written by the goroutine, read once done is closed.
	acked      map[string][]int // per entity, the values of n acknowledged, in order
	lampGone   bool             // the lamp's delete was acknowledged
	unexpected error            // the first error that is not a full backlog
}

// startEditor starts changing the entities of m's room: those given, in
// turn, which hold n = 0, and a new one every 50 changes.
func startEditor(m *rooms.Membership, lamp string, entities ...string) *editor {
	e := &editor{m: m, lamp: lamp, stop: make(chan struct{}), done: make(chan struct{}), acked: map[string][]int{}}
	for _, id := range entities {
		e.acked[id] = []int{0}
	}
	go e.run(entities)
	return e
}

func (e *editor) run(turn []string) {
	defer close(e.done)
	for n := 1; ; n++ {
		select {
		case <-e.stop:
			return
		case <-time.After(time.Millisecond):
		}
		phase := e.phase.Load()
		var err error
		switch {
		case phase == duringOutage && !e.lampGone && n%10 == 0:
			if err = e.m.DeleteEntity(e.lamp, nil); err == nil {
				e.lampGone = true
			}
		case n%50 == 0:
			var id string
			if id, err = e.m.CreateEntity(rooms.Components{"n": n, "born": n}, nil); err == nil {
				e.acked[id] = append(e.acked[id], n)
				turn = append(turn, id)
			}
		default:
			id := turn[n%len(turn)]
			if err = e.m.UpdateEntity(id, rooms.Components{"n": n}, nil); err == nil {
				e.acked[id] = append(e.acked[id], n)
			}
		}
		switch {
		case err == nil:
			e.ackedIn[phase].Add(1)
		case errors.Is(err, rooms.ErrStoreBacklog) && strings.HasPrefix(err.Error(), rooms.ErrStoreBacklog.Error()+": "):
			e.refusedIn[phase].Add(1)
		default:
			e.unexpected = fmt.Errorf("change %d in phase %d: %w", n, phase, err)
			return
		}
	}
}

// halt stops the editor and waits for it. It may be called more than once.
func (e *editor) halt() {
	e.halting.Do(func() { close(e.stop) })
	<-e.done
}

// await waits until n changes were acknowledged in phase, or fails t.
func (e *editor) await(t *testing.T, phase, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.ackedIn[phase].Load() < int64(n) {
		select {
		case <-e.done:
			t.Fatalf("the editor stopped: %v", e.unexpected)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes acknowledged in phase %d after 10s, want %d", e.ackedIn[phase].Load(), phase, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counts returns the changes acknowledged and refused in each phase.
func (e *editor) counts() (acked, refused [phases]int64) {
	for i := range phases {
		acked[i], refused[i] = e.ackedIn[i].Load(), e.refusedIn[i].Load()
	}
	return acked, refused
}

// checkWritten fails t unless the database at url holds the world of the
// live room hall, and wrote, for every entity in acked, the values of n
// acknowledged, in order.
func checkWritten(t *testing.T, s *pgstore.Store, reg *rooms.Registry, url string, acked map[string][]int) {
	t.Helper()
	world, err := reg.DescribeRoom(testContext(t), "hall")
	if err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, url, world.Entities, acked)
}

// checkStored fails t unless the database at url holds world as the room
// hall's entities, and wrote, for every entity in acked, those values of n,
// in order.
func checkStored(t *testing.T, s *pgstore.Store, url string, world map[string]rooms.Components, acked map[string][]int) {
	t.Helper()
	stored, err := s.Entities(testContext(t), "hall")
	if err != nil {
		t.Fatal(err)
	}
	if g, w := asJSON(t, stored), asJSON(t, world); !reflect.DeepEqual(g, w) {
		t.Errorf("the database holds\n%v\nthe room holds\n%v", g, w)
	}
	for id, want := range acked {
		written, err := audited(t, url, id)
		if err != nil {
			t.Fatal(err)
		}
		// A batch whose commit was cut off may be written again: count each
		// value where it first appears.
		var firsts []int
		seen := map[int]bool{}
		for _, v := range written {
			if !seen[v] {
				seen[v] = true
				firsts = append(firsts, v)
			}
		}
		if !reflect.DeepEqual(firsts, want) {
			i := 0
			for i < min(len(firsts), len(want)) && firsts[i] == want[i] {
				i++
			}
			t.Errorf("entity %s: the database wrote %d values of n, the room acknowledged %d; from #%d on it wrote %v, the room acknowledged %v",
				id, len(firsts), len(want), i, firsts[i:min(i+5, len(firsts))], want[i:min(i+5, len(want))])
		}
		if got, ok := stored[id]["n"]; !ok || asJSON(t, got) != asJSON(t, want[len(want)-1]) {
			t.Errorf("entity %s: n = %v in the database, last acknowledged %d", id, got, want[len(want)-1])
		}
	}
}

// TestAnOutageLosesNoAcknowledgedChange changes entities through a room,
// about once a millisecond, while the database refuses every connection for
// a second and comes back: the room goes on, the syncer's writes fail all
// along, changes past the bound are refused as a full backlog, and once the
// backlog drains every change the room acknowledged is in the database, in
// order, and the database holds the room's world.
func TestAnOutageLosesNoAcknowledgedChange(t *testing.T) {
	const (
		bound = 300
		down  = time.Second
	)
	url := pgtest.Database(t)
	ctx := testContext(t)
	s := open(t, url)
	if err := execSQL(t, url, auditSQL); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	reg := newRegistry(t, s, rooms.Config{Tick: 20 * time.Millisecond, StoreTimeout: 2 * time.Second, MaxPendingChanges: bound, Logger: slog.New(logs)})
	m, err := reg.Join(ctx, "hall", member{}, rooms.JoinRequest{User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	var entities []string
	for range 3 {
		id, err := m.CreateEntity(rooms.Components{"n": 0}, nil)
		if err != nil {
			t.Fatal(err)
		}
		entities = append(entities, id)
	}
	lamp, err := m.CreateEntity(rooms.Components{"lamp": true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startEditor(m, lamp, entities...)
	defer e.halt()
	e.await(t, beforeOutage, 100)

	failedBefore := len(logs.find(msgSyncFailed))
	e.phase.Store(duringOutage)
	restore := outage(t, url)
	// Nothing can be written now: the backlog only grows, up to the bound.
	atStart, last := reg.PendingChanges(), reg.PendingChanges()
	for end := time.Now().Add(down); time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
		p := reg.PendingChanges()
		if p < last {
			t.Errorf("the backlog went from %d to %d changes while the database refused connections", last, p)
		}
		last = p
	}
	failedDuring := len(logs.find(msgSyncFailed)) - failedBefore
	restore()
	e.phase.Store(afterOutage)
	// Once the syncer gets through, the backlog has room again.
	e.await(t, afterOutage, 100)
	e.halt()
	if e.unexpected != nil {
		t.Fatal(e.unexpected)
	}
	acked, refused := e.counts()
	t.Logf("acknowledged %v and refused %v changes before, during and after the outage; %d sync attempts failed during it; backlog %d → %d",
		acked, refused, failedDuring, atStart, last)

	if refused[beforeOutage] != 0 {
		t.Errorf("%d changes refused before the outage", refused[beforeOutage])
	}
	if failedBefore != 0 {
		t.Errorf("%d sync attempts failed before the outage", failedBefore)
	}
	if failedDuring < 3 {
		t.Errorf("%d sync attempts failed during the %v outage, want several", failedDuring, down)
	}
	if acked[duringOutage] == 0 || refused[duringOutage] == 0 {
		t.Errorf("during the outage %d changes were acknowledged and %d refused, want some of each", acked[duringOutage], refused[duringOutage])
	}
	if last != bound {
		t.Errorf("%d changes waited at the end of the outage, want the bound %d", last, bound)
	}
	if !e.lampGone {
		t.Error("the lamp's delete was never acknowledged during the outage")
	}

	awaitDrained(t, reg, 10*time.Second)
	rec := logs.find(msgSyncRecovered)
	if len(rec) != 1 || attr(rec[0], "failed_attempts").Any() == nil || attr(rec[0], "failed_attempts").Int64() < int64(failedDuring) {
		t.Errorf("%d %q records (%v), want one that counts at least the %d failed attempts", len(rec), msgSyncRecovered, rec, failedDuring)
	}
	checkWritten(t, s, reg, url, e.acked)
}

// TestCloseDuringAnOutage closes the registry while the syncer is failing
// to write: as docs/ARCHITECTURE.md §5 has it, Close cuts the retries short
// after one last attempt to write everything.
func TestCloseDuringAnOutage(t *testing.T) {
	const storeTimeout = time.Second
	type setup struct {
		s        *pgstore.Store
		reg      *rooms.Registry
		url      string
		counter  string
		logs     *logRecorder
		restore  func()
		atOutage map[string]rooms.Components // the room's world, all written, when the outage began
		atClose  map[string]rooms.Components // the room's world when Close was called
	}
	// setUp starts a room on a new database, writes changes 1 to 20 of an
	// entity, then makes the database refuse connections, changes the
	// entity 30 more times, and waits until the syncer's writes failed
	// failures times.
	setUp := func(t *testing.T, failures int) *setup {
		x := &setup{url: pgtest.Database(t), logs: &logRecorder{}}
		ctx := testContext(t)
		x.s = open(t, x.url)
		if err := execSQL(t, x.url, auditSQL); err != nil {
			t.Fatal(err)
		}
		x.reg = newRegistry(t, x.s, rooms.Config{Tick: 20 * time.Millisecond, StoreTimeout: storeTimeout, Logger: slog.New(x.logs)})
		m, err := x.reg.Join(ctx, "hall", member{}, rooms.JoinRequest{User: "ada"})
		if err != nil {
			t.Fatal(err)
		}
		if x.counter, err = m.CreateEntity(rooms.Components{"n": 0}, nil); err != nil {
			t.Fatal(err)
		}
		describe := func() map[string]rooms.Components {
			v, err := x.reg.DescribeRoom(ctx, "hall")
			if err != nil {
				t.Fatal(err)
			}
			return v.Entities
		}
		for n := 1; n <= 50; n++ {
			if n == 21 {
				awaitDrained(t, x.reg, 5*time.Second)
				x.atOutage = describe()
				x.restore = outage(t, x.url)
			}
			if err := m.UpdateEntity(x.counter, rooms.Components{"n": n}, nil); err != nil {
				t.Fatal(err)
			}
		}
		x.atClose = describe()
		x.logs.await(t, msgSyncFailed, failures)
		return x
	}
	upTo := func(n int) []int {
		var out []int
		for i := range n + 1 {
			out = append(out, i)
		}
		return out
	}

	t.Run("the database still away: Close returns after one last attempt and says what it did not write", func(t *testing.T) {
		x := setUp(t, 1)
		start := time.Now()
		x.reg.Close()
		if took := time.Since(start); took > 2*storeTimeout+time.Second {
			t.Errorf("Close took %v, with store calls bounded by %v", took, storeTimeout)
		}
		rec := x.logs.find(msgNotWritten)
		if len(rec) != 1 || attr(rec[0], "pending").Any() != any(int64(30)) {
			t.Errorf("%d %q records (%v), want one with the 30 changes made during the outage", len(rec), msgNotWritten, rec)
		}
		x.restore()
		checkStored(t, x.s, x.url, x.atOutage, map[string][]int{x.counter: upTo(20)})
	})

	t.Run("the database back while the syncer waits to retry: Close writes everything at once", func(t *testing.T) {
		// After the fifth failure the syncer waits 800 ms before it tries
		// again.
		x := setUp(t, 5)
		fifth := x.logs.find(msgSyncFailed)[4]
		wait, ok := attr(fifth, "backoff").Any().(time.Duration)
		if !ok || wait < 500*time.Millisecond {
			t.Fatalf("the syncer waits %v after five failures", attr(fifth, "backoff"))
		}
		retry := fifth.Time.Add(wait)
		x.restore()
		x.reg.Close()
		if now := time.Now(); !now.Before(retry) {
			t.Errorf("Close returned %v after the syncer's next attempt was due: it did not cut the wait short", now.Sub(retry))
		}
		if rec := x.logs.find(msgNotWritten); len(rec) != 0 {
			t.Errorf("Close left changes unwritten: %v", rec)
		}
		checkStored(t, x.s, x.url, x.atClose, map[string][]int{x.counter: upTo(50)})
	})
}

// audited returns the values of an entity's "n" in the order the database
// wrote them.
func audited(t *testing.T, url, entity string) ([]int, error) {
	rows, _ := pgtest.Conn(t, url).Query(testContext(t), `SELECT value::int FROM audit WHERE entity_id = $1 AND component_name = 'n' ORDER BY id`, entity)
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

func execSQL(t *testing.T, url, sql string) error {
	_, err := pgtest.Conn(t, url).Exec(testContext(t), sql)
	return err
}

func queryRow(t *testing.T, url string, dst any, sql string) error {
	return pgtest.Conn(t, url).QueryRow(testContext(t), sql).Scan(dst)
}
