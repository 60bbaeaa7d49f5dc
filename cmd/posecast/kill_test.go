package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms/pgstore"
	"github.com/posecast/posecast/transport/client"
)

// TestAKilledServerLosesNothingItAcknowledged builds posecast, runs it on a
// database, has clients change entities as fast as they are acknowledged,
// kills the process with SIGKILL mid-stream, and reads the database: every
// change that was answered ok is there.
func TestAKilledServerLosesNothingItAcknowledged(t *testing.T) {
	db := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "posecast")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	udp, tcp := freePort(t, "udp"), freePort(t, "tcp")
	httpURL := "http://127.0.0.1:" + strconv.Itoa(tcp)
	cmd := exec.Command(bin, "--listen", "127.0.0.1:"+strconv.Itoa(udp), "--http", "127.0.0.1:"+strconv.Itoa(tcp),
		"--database-url", db, "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for {
		r, err := http.Get(httpURL + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the server never became ready")
		case <-time.After(20 * time.Millisecond):
		}
	}

	const writers = 4
	acked := make([]int, writers) // by writer: the last value answered ok
	ids := make([]string, writers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	killed := make(chan struct{})
	for w := range writers {
		c, _, err := client.Connect(ctx, client.ConnectConfig{HTTP: httpURL, Join: codec.Join{Room: "lobby", Name: fmt.Sprint("writer ", w)}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, err := c.CreateEntity(ctx, codec.Components{"counter": 0})
		if err != nil {
			t.Fatal(err)
		}
		ids[w] = id
		wg.Go(func() {
			for n := 1; ; n++ {
				// Within the room operation limit (20/s), as fast as oks come.
				time.Sleep(60 * time.Millisecond)
				if _, err := c.Request(ctx, &codec.Update{Entity: id, Components: codec.Components{"counter": n}}); err != nil {
					return // the server is gone
				}
				select {
				case <-killed:
					return // an ok after the kill cannot be: stop counting
				default:
				}
				mu.Lock()
				acked[w] = n
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: nothing is flushed
		t.Fatal(err)
	}
	close(killed)
	cmd.Wait()
	wg.Wait()

	store, err := pgstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	entities, err := store.Entities(ctx, "lobby")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for w, id := range ids {
		got, _ := entities[id]["counter"].(int64)
		if int(got) < acked[w] {
			t.Errorf("writer %d: the store holds %d, but %d was acknowledged", w, got, acked[w])
		}
		total += acked[w]
	}
	if total < writers*10 {
		t.Errorf("only %d changes were acknowledged in 2 s: the test proves little", total)
	}
	t.Logf("%d acknowledged changes", total)
}
