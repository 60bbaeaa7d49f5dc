package pgstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/pgstore"
	"github.com/posecast/posecast/rooms/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open opens a store on a fresh database of t's and closes it when t ends.
func open(t testing.TB, url string) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) rooms.Store { return open(t, pgtest.Database(t)) })
}
