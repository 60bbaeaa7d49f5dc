package rooms_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) rooms.Store { return &rooms.MemoryStore{} })
}

func TestTheMemoryStoreIsBounded(t *testing.T) {
	s := &rooms.MemoryStore{MaxRooms: 2}
	ctx := context.Background()
	for i := range 2 {
		if _, err := s.CreateRoom(ctx, rooms.RoomInfo{ID: fmt.Sprint("r", i), CreatedAt: time.Now()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateRoom(ctx, rooms.RoomInfo{ID: "r2", CreatedAt: time.Now()}, nil); err == nil {
		t.Fatal("a third room in a store of two")
	}
	if err := s.DeleteRoom(ctx, "r0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoom(ctx, rooms.RoomInfo{ID: "r2", CreatedAt: time.Now()}, nil); err != nil {
		t.Errorf("a room where one was deleted: %v", err)
	}
}

// BenchmarkMemoryStoreRooms lists the first page of a store of 100 000
// rooms: what GET /api/rooms?limit=1 costs.
func BenchmarkMemoryStoreRooms(b *testing.B) {
	s := &rooms.MemoryStore{}
	ctx := context.Background()
	at := time.Now()
	for i := range rooms.DefaultMaxMemoryRooms {
		if _, err := s.CreateRoom(ctx, rooms.RoomInfo{ID: fmt.Sprint("r", i), CreatedAt: at.Add(time.Duration(i))}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if page, err := s.Rooms(ctx, rooms.RoomCursor{}, 1); err != nil || len(page) != 1 {
			b.Fatal(page, err)
		}
	}
}
