package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/transport"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// apiCall sends a rooms API request and decodes the JSON answer into out.
func apiCall(t *testing.T, method, url string, body, out any) int {
	t.Helper()
	var in bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&in).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, url, &in)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

type migrationRow struct {
	Version   int
	AppliedAt time.Time
}

func migrationRows(t *testing.T, ctx context.Context, url string) []migrationRow {
	t.Helper()
	rows, _ := pgtest.Conn(t, url).Query(ctx, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[migrationRow])
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestRoomsOutliveARestart runs posecast on a database, makes rooms through
// the API and changes entities through a room over WebTransport, stops it
// with SIGTERM and starts it again on the same database: everything is
// there, and the second start migrates nothing.
func TestRoomsOutliveARestart(t *testing.T) {
	db := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := serve(t, ctx, "--database-url", db)
	var lobby transport.APIRoom
	if code := apiCall(t, "POST", s.httpURL+"/api/rooms", map[string]string{"name": "Lobby"}, &lobby); code != http.StatusCreated {
		t.Fatalf("POST /api/rooms = %d", code)
	}
	c := s.join(t, ctx, lobby.ID)
	door, err := c.CreateEntity(ctx, codec.Components{"door": map[string]any{"open": false}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(ctx, &codec.Update{Entity: door, Components: codec.Components{"door": map[string]any{"open": true}, "by": "Ada"}}); err != nil {
		t.Fatal(err)
	}
	var obstacle string
	for id, comps := range lobby.Entities {
		if _, ok := comps["obstacle"]; ok {
			obstacle = id
		}
	}
	if _, err := c.Request(ctx, &codec.Delete{Entity: obstacle}); err != nil {
		t.Fatal(err)
	}
	var before transport.APIRoom
	if code := apiCall(t, "GET", s.httpURL+"/api/rooms/"+lobby.ID, nil, &before); code != http.StatusOK {
		t.Fatalf("GET the room = %d", code)
	}
	if before.Present != 1 || len(before.Entities) != len(lobby.Entities) {
		t.Errorf("before the restart the room has %d present and %d entities, want 1 and %d", before.Present, len(before.Entities), len(lobby.Entities))
	}
	s.stop(t, ctx)
	migrated := migrationRows(t, ctx, db)

	s = serve(t, ctx, "--database-url", db)
	defer s.stop(t, ctx)
	var after transport.APIRoom
	if code := apiCall(t, "GET", s.httpURL+"/api/rooms/"+lobby.ID, nil, &after); code != http.StatusOK {
		t.Fatalf("GET the room after the restart = %d", code)
	}
	if after.Name != "Lobby" || after.Present != 0 || after.Live {
		t.Errorf("after the restart the room is %+v", after)
	}
	if !reflect.DeepEqual(after.Entities, before.Entities) {
		t.Errorf("entities after the restart\n%v\nbefore\n%v", after.Entities, before.Entities)
	}
	if got := after.Entities[door]; !reflect.DeepEqual(got, map[string]any{"door": map[string]any{"open": true}, "by": "Ada"}) {
		t.Errorf("the door is %v", got)
	}
	if _, ok := after.Entities[obstacle]; ok {
		t.Error("the deleted obstacle is back")
	}
	var list transport.APIRoomList
	if code := apiCall(t, "GET", s.httpURL+"/api/rooms", nil, &list); code != http.StatusOK || len(list.Rooms) != 1 || list.Rooms[0].ID != lobby.ID {
		t.Errorf("GET /api/rooms = %d %+v", code, list)
	}
	if again := migrationRows(t, ctx, db); len(migrated) == 0 || !reflect.DeepEqual(again, migrated) {
		t.Errorf("migrations after the first start %v, after the second %v", migrated, again)
	}
}
