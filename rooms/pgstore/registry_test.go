package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/pgstore"
)

// member is a rooms.Member that ignores what rooms send it.
type member struct{}

func (member) SendDatagram([]byte)  {}
func (member) SendFrame([]byte)     {}
func (member) MaxDatagramSize() int { return 1200 }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newRegistry(t *testing.T, s rooms.Store, cfg rooms.Config) *rooms.Registry {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
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
	door, err := m.CreateEntity(rooms.Components{"door": map[string]any{"open": false}, "position": []any{1.0, 0.0, 2.5}})
	if err != nil {
		t.Fatal(err)
	}
	lamp, err := m.CreateEntity(rooms.Components{"lamp": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateEntity(door, rooms.Components{"door": map[string]any{"open": true}, "opened_by": "ada"}); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteEntity(lamp); err != nil {
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
	list, err := reg2.ListRooms(ctx)
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
	if err := m2.UpdateEntity(door, rooms.Components{"opened_by": "bob"}); err != nil {
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

// TestAnOutageLosesNoAcknowledgedChange changes an entity through a room
// while the database goes away and comes back: the room goes on, refuses
// changes past its bound, and every change it acknowledged reaches the
// database, in order.
func TestAnOutageLosesNoAcknowledgedChange(t *testing.T) {
	const bound = 300
	url := pgtest.Database(t)
	ctx := testContext(t)
	s := open(t, url)
	if err := execSQL(t, url, auditSQL); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, s, rooms.Config{Tick: 20 * time.Millisecond, StoreTimeout: 2 * time.Second, MaxPendingChanges: bound})
	m, err := reg.Join(ctx, "hall", member{}, rooms.JoinRequest{User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	counter, err := m.CreateEntity(rooms.Components{"n": 0})
	if err != nil {
		t.Fatal(err)
	}
	var acked []int
	refused := 0
	n := 0
	change := func(retry bool) {
		n++
		for {
			err := m.UpdateEntity(counter, rooms.Components{"n": n})
			switch {
			case err == nil:
				acked = append(acked, n)
				return
			case !errors.Is(err, rooms.ErrStoreBacklog):
				t.Fatalf("change %d: %v", n, err)
			case !retry:
				refused++
				return
			case ctx.Err() != nil:
				t.Fatalf("change %d still refused: %v", n, err)
			}
			time.Sleep(10 * time.Millisecond) // the queue drains now the database is back
		}
	}

	for range 100 {
		change(false)
	}
	pgtest.Refuse(t, url)
	for range 2 * bound {
		change(false)
		if n%50 == 0 {
			if _, err := m.CreateEntity(rooms.Components{"during_outage": n}); err != nil && !errors.Is(err, rooms.ErrStoreBacklog) {
				t.Fatal(err)
			}
		}
	}
	if refused == 0 {
		t.Fatalf("no change was refused during the outage; the bound is %d", bound)
	}
	if got := reg.PendingChanges(); got != bound {
		t.Errorf("%d changes wait during the outage, want the bound %d", got, bound)
	}
	pgtest.Allow(t, url)
	for range 100 {
		change(true)
	}
	world, err := reg.DescribeRoom(ctx, "hall")
	if err != nil {
		t.Fatal(err)
	}
	reg.Close() // writes what is left

	if got := reg.PendingChanges(); got != 0 {
		t.Errorf("%d changes left after close", got)
	}
	stored, err := s.Entities(ctx, "hall")
	if err != nil {
		t.Fatal(err)
	}
	if g, w := asJSON(t, stored), asJSON(t, world.Entities); !reflect.DeepEqual(g, w) {
		t.Errorf("the database holds\n%v\nthe room held\n%v", g, w)
	}
	written, err := audited(t, url, counter)
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
	want := append([]int{0}, acked...)
	if !reflect.DeepEqual(firsts, want) {
		t.Errorf("the database wrote n = %v\nacknowledged %v (%d refused)", firsts, want, refused)
	}
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
