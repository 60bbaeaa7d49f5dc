// Package pgstore is a rooms.Store in PostgreSQL, through a pgx connection
// pool: rooms and the components of their environment entities survive
// restarts and are shared by every node that uses the same database. It is
// never on the pose path: rooms read it when they start and write it from
// their syncers, in batches.
//
// The schema is versioned by migrations embedded in the binary, which Open
// applies (see migrate.go). Component values are kept as jsonb; they come
// back as JSON decodes them, with integral numbers as int64 (or uint64 past
// it) and others as float64.
package pgstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posecast/posecast/rooms"
)

// DefaultConnectTimeout bounds connecting to the server when the URL does
// not say (connect_timeout).
const DefaultConnectTimeout = 5 * time.Second

// Store is a rooms.Store in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	applied []Migration
}

var _ rooms.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN, with pgxpool's pool_* settings if wanted), checks that it answers,
// and applies the migrations it lacks. ctx bounds all of it. Close the
// store when done.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "posecast"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect to %s: %w", Describe(url), err)
	}
	applied, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, applied: applied}, nil
}

// Describe returns where url points (user, host, port, database) without
// its password, for logs.
func Describe(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable database URL)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// Applied returns the migrations that Open applied: none when the schema
// was already current.
func (s *Store) Applied() []Migration { return s.applied }

// Ping checks that the database answers, for readiness checks.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes every connection of the pool. It waits for queries in
// flight to return.
func (s *Store) Close() { s.pool.Close() }

// CreateRoom implements rooms.Store.
func (s *Store) CreateRoom(ctx context.Context, info rooms.RoomInfo, entities map[string]rooms.Components) (bool, error) {
	var created bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO rooms (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
			info.ID, info.Name, info.CreatedAt)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		created = true
		if len(entities) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO components (room_id, entity_id, component_name, value)
			SELECT $1, e.key, c.key, c.value FROM jsonb_each($2::jsonb) e, jsonb_each(e.value) c`,
			info.ID, entities)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("pgstore: create room %s: %w", info.ID, err)
	}
	return created, nil
}

// Room implements rooms.Store.
func (s *Store) Room(ctx context.Context, id string) (rooms.RoomInfo, error) {
	var ri rooms.RoomInfo
	err := s.pool.QueryRow(ctx, `SELECT id, name, created_at FROM rooms WHERE id = $1`, id).Scan(&ri.ID, &ri.Name, &ri.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ri, rooms.ErrRoomNotFound
	}
	if err != nil {
		return ri, fmt.Errorf("pgstore: room %s: %w", id, err)
	}
	return ri, nil
}

// Rooms implements rooms.Store.
func (s *Store) Rooms(ctx context.Context, after rooms.RoomCursor, limit int) ([]rooms.RoomInfo, error) {
	// Ids compare byte by byte, as they do in Go, whatever the database's
	// collation.
	rows, _ := s.pool.Query(ctx, `SELECT id, name, created_at FROM rooms
		WHERE (created_at, id COLLATE "C") > ($1, $2)
		ORDER BY created_at, id COLLATE "C" LIMIT $3`, after.CreatedAt, after.ID, max(limit, 0))
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (rooms.RoomInfo, error) {
		var ri rooms.RoomInfo
		err := row.Scan(&ri.ID, &ri.Name, &ri.CreatedAt)
		return ri, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: rooms: %w", err)
	}
	return list, nil
}

// DeleteRoom implements rooms.Store.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM rooms WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("pgstore: delete room %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return rooms.ErrRoomNotFound
	}
	return nil
}

// Entities implements rooms.Store.
func (s *Store) Entities(ctx context.Context, room string) (map[string]rooms.Components, error) {
	// The room's row comes with its components, or alone (with NULLs) when
	// it has none: no row at all means no room.
	return s.entities(ctx, room, `SELECT c.entity_id, c.component_name, c.value
		FROM rooms r LEFT JOIN components c ON c.room_id = r.id
		WHERE r.id = $1`, room)
}

// EntitiesWith implements rooms.Store.
func (s *Store) EntitiesWith(ctx context.Context, room, component string) (map[string]rooms.Components, error) {
	return s.entities(ctx, room, `SELECT c.entity_id, c.component_name, c.value
		FROM rooms r LEFT JOIN components c ON c.room_id = r.id AND c.entity_id IN (
			SELECT entity_id FROM components WHERE room_id = $1 AND component_name = $2)
		WHERE r.id = $1`, room, component)
}

func (s *Store) entities(ctx context.Context, room, sql string, args ...any) (map[string]rooms.Components, error) {
	rows, _ := s.pool.Query(ctx, sql, args...)
	out := make(map[string]rooms.Components)
	found := false
	var entity, name *string
	var raw []byte
	_, err := pgx.ForEachRow(rows, []any{&entity, &name, &raw}, func() error {
		found = true
		if entity == nil {
			return nil
		}
		v, err := decodeValue(raw)
		if err != nil {
			return fmt.Errorf("entity %s component %s: %w", *entity, *name, err)
		}
		c := out[*entity]
		if c == nil {
			c = make(rooms.Components)
			out[*entity] = c
		}
		c[*name] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: entities of %s: %w", room, err)
	}
	if !found {
		return nil, rooms.ErrRoomNotFound
	}
	return out, nil
}

// Statements of Apply: the hold, then one or two per change.
const (
	sqlHold = `SELECT posecast_hold($1, $2, $3)`
	sqlSet  = `INSERT INTO components (room_id, entity_id, component_name, value)
		SELECT $1, $2, key, value FROM jsonb_each($3::jsonb)
		ON CONFLICT (room_id, entity_id, component_name) DO UPDATE SET value = EXCLUDED.value`
	sqlUnset  = `DELETE FROM components WHERE room_id = $1 AND entity_id = $2 AND component_name = ANY($3)`
	sqlDelete = `DELETE FROM components WHERE room_id = $1 AND entity_id = $2`
)

// SQLSTATEs that posecast_hold raises (migration 0002).
const (
	stateRoomNotFound = "PCNRF"
	stateFenced       = "PCFEN"
)

// Apply implements rooms.Store. The changes travel as one pipelined batch,
// which the server runs as one implicit transaction: one round trip for
// the whole batch, and all or none of it. The batch first holds the room's
// row (posecast_hold), so that a concurrent DeleteRoom or Fence waits for
// the batch, and a batch from a claim that is not the newest, or for a room
// that is gone, fails there and writes nothing.
func (s *Store) Apply(ctx context.Context, room string, claim rooms.Claim, changes []rooms.Change) error {
	b := &pgx.Batch{}
	b.Queue(sqlHold, room, claim.Generation, int64(claim.Epoch))
	for _, ch := range changes {
		queueChange(b, room, ch)
	}
	br := s.pool.SendBatch(ctx, b)
	var err error
	for i := 0; err == nil && i < b.Len(); i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == stateRoomNotFound:
		return rooms.ErrRoomNotFound
	case errors.As(err, &pgErr) && pgErr.Code == stateFenced:
		return fmt.Errorf("pgstore: apply to %s: %w: %s", room, rooms.ErrFenced, pgErr.Message)
	}
	return fmt.Errorf("pgstore: apply %d changes to %s: %w", len(changes), room, err)
}

// Fence implements rooms.Store. The update waits for the batches that hold
// the room's row, so none of an older claim commits after it.
func (s *Store) Fence(ctx context.Context, room string, claim rooms.Claim) error {
	var fenced bool
	var gen, epoch *int64
	err := s.pool.QueryRow(ctx, `WITH fenced AS (
			UPDATE rooms SET epoch_generation = $2, epoch = $3
			WHERE id = $1 AND (epoch_generation, epoch) <= ($2, $3) RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM fenced), r.epoch_generation, r.epoch
		FROM (SELECT 1) one LEFT JOIN rooms r ON r.id = $1`,
		room, claim.Generation, int64(claim.Epoch)).Scan(&fenced, &gen, &epoch)
	switch {
	case err != nil:
		return fmt.Errorf("pgstore: fence %s at %+v: %w", room, claim, err)
	case fenced:
		return nil
	case gen == nil:
		return rooms.ErrRoomNotFound
	}
	return fmt.Errorf("pgstore: fence %s at %+v: %w by generation %d epoch %d", room, claim, rooms.ErrFenced, *gen, *epoch)
}

// queueChange adds the statements of one change to b.
func queueChange(b *pgx.Batch, room string, ch rooms.Change) {
	if ch.Delete {
		b.Queue(sqlDelete, room, ch.Entity)
		return
	}
	if len(ch.Set) > 0 {
		b.Queue(sqlSet, room, ch.Entity, ch.Set)
	}
	if len(ch.Unset) > 0 {
		b.Queue(sqlUnset, room, ch.Entity, ch.Unset)
	}
}

// decodeValue decodes a stored JSON value, keeping integers integers.
func decodeValue(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

// numbers replaces the json.Numbers in v with int64, uint64 or float64.
func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	}
	return v
}
