package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// maxSyncBatch bounds the changes written in one store call.
const maxSyncBatch = 500

// syncer writes a room's environment entity changes to the store, in order,
// in batches, from its own goroutine, so that a slow or absent store never
// holds up the room. Changes wait in a bounded queue; when it is full the
// room refuses new changes rather than lose acknowledged ones.
type syncer struct {
	store Store
	room  string
	claim Claim // the room's; set before loop starts
	// fenced is called, from loop, when the store refused a batch because
	// a newer claim owns the room; the changes were dropped.
	fenced   func()
	limit    int
	timeout  time.Duration
	interval time.Duration
	log      *slog.Logger
	wake     chan struct{} // a change was queued
	full     chan struct{} // a whole batch waits

	// nodeBytes counts the bytes pending in every room's syncer; byteLimit
	// bounds it.
	nodeBytes *atomic.Int64
	byteLimit int64

	mu      sync.Mutex // guards the following
	pending []Change
	stored  []func(error) // by pending's index: told the outcome, or nil
}

func newSyncer(store Store, room string, cfg *Config, nodeBytes *atomic.Int64) *syncer {
	return &syncer{
		store:     store,
		room:      room,
		nodeBytes: nodeBytes,
		byteLimit: int64(cfg.MaxPendingBytes),
		limit:     cfg.MaxPendingChanges,
		timeout:   cfg.StoreTimeout,
		interval:  cfg.SyncInterval,
		log:       cfg.Logger,
		wake:      make(chan struct{}, 1),
		full:      make(chan struct{}, 1),
	}
}

// add queues a change, or refuses it with ErrStoreBacklog when the queue is
// full. It never blocks on the store.
func (s *syncer) add(ch Change, stored func(error)) error {
	size := int64(changeSize(ch))
	if total := s.nodeBytes.Add(size); total > s.byteLimit {
		s.nodeBytes.Add(-size)
		return fmt.Errorf("%w: %d bytes of changes wait for the store on this node", ErrStoreBacklog, total-size)
	}
	s.mu.Lock()
	if len(s.pending) >= s.limit {
		n := len(s.pending)
		s.mu.Unlock()
		s.nodeBytes.Add(-size)
		return fmt.Errorf("%w: %d changes wait for the store", ErrStoreBacklog, n)
	}
	s.pending = append(s.pending, ch)
	s.stored = append(s.stored, stored)
	n := len(s.pending)
	s.mu.Unlock()
	poke(s.wake)
	if n == maxSyncBatch {
		poke(s.full)
	}
	return nil
}

// Pending returns how many changes wait to be written.
func (s *syncer) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// loop writes queued changes until stop is closed, a batch at most every
// SyncInterval unless a whole batch waits. After stop it keeps writing, at
// once, with backoff through store errors, until everything is written: a
// room that stops must not lose changes it acknowledged, and the next
// instance of the room waits for this one's writes before it loads. Only
// quit (the registry shutting down) cuts that short, after one last attempt
// bounded by the store timeout. Runs in its own goroutine.
func (s *syncer) loop(stop, quit <-chan struct{}) {
	backoff := 50 * time.Millisecond
	stopped := false
	var last time.Time // when the last write started
	failures := 0      // in a row
	for {
		if !stopped {
			select {
			case <-stop:
				stopped = true
			case <-s.wake:
			}
		}
		if !stopped && s.Pending() < maxSyncBatch {
			// Changes that come faster than the interval go together: one
			// transaction per interval rather than one per change.
			if wait := s.interval - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-s.full:
				case <-stop:
					stopped = true
				}
				t.Stop()
			}
		}
		if s.Pending() > 0 {
			last = time.Now()
		}
		wrote, err := s.writeBatch()
		switch {
		case err != nil:
			// An outage fails every room's writes: say so once per room,
			// not at every retry.
			level := slog.LevelDebug
			if failures == 0 {
				level = slog.LevelWarn
			}
			failures++
			s.log.Log(context.Background(), level, "store sync failed; retrying with backoff", "room", s.room, "pending", s.Pending(), "backoff", backoff, "err", err)
			stopCh := stop
			if stopped {
				stopCh = nil // closed already: it must not cut the backoff short
			}
			select {
			case <-quit:
				if err := s.flush(); err != nil {
					s.log.Error("store sync: changes not written at shutdown", "room", s.room, "pending", s.Pending(), "err", err)
					s.dropAll(fmt.Errorf("%w: the server stopped while the store was unreachable: %w", ErrUnavailable, err))
				}
				return
			case <-time.After(backoff):
			case <-stopCh:
				stopped = true
			}
			backoff = min(2*backoff, 5*time.Second)
			poke(s.wake)
		case wrote > 0:
			if failures > 0 {
				s.log.Info("store sync recovered", "room", s.room, "failed_attempts", failures, "pending", s.Pending())
				failures = 0
			}
			backoff = 50 * time.Millisecond
			poke(s.wake) // there may be more
		case stopped:
			return
		}
	}
}

// poke signals c without blocking; one signal waits at most.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// flush writes everything queued, batch by batch, until done or an error.
func (s *syncer) flush() error {
	for {
		n, err := s.writeBatch()
		if err != nil || n == 0 {
			return err
		}
	}
}

// writeBatch writes up to maxSyncBatch changes from the head of the queue
// and drops them from it once the store has them.
func (s *syncer) writeBatch() (int, error) {
	s.mu.Lock()
	n := min(len(s.pending), maxSyncBatch)
	batch := s.pending[:n:n]
	s.mu.Unlock()
	if n == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	err := s.store.Apply(ctx, s.room, s.claim, batch)
	switch {
	case errors.Is(err, ErrRoomNotFound):
		// The room was deleted from the store under us: nothing can hold
		// these changes any more.
		s.log.Error("store sync: room is gone from the store; dropping changes", "room", s.room, "changes", n)
		s.drop(n, fmt.Errorf("%w: room %s was deleted", ErrRoomNotFound, s.room))
		return n, nil
	case errors.Is(err, ErrFenced):
		// Another node owns the room now and has read the store: nothing
		// of this instance may land there any more.
		dropped := s.dropAll(fmt.Errorf("%w: room %s moved to another node before the change was stored", ErrUnavailable, s.room))
		s.log.Error("store sync: another node owns the room now; dropping changes", "room", s.room, "claim", s.claim, "changes", dropped, "err", err)
		if s.fenced != nil {
			s.fenced()
		}
		return dropped, nil
	case err != nil:
		return 0, err
	}
	s.drop(n, nil)
	return n, nil
}

// drop removes the first n changes from the queue and tells each's waiter
// result: nil when they are stored.
func (s *syncer) drop(n int, result error) {
	s.mu.Lock()
	var size int64
	for _, ch := range s.pending[:n] {
		size += int64(changeSize(ch))
	}
	s.nodeBytes.Add(-size)
	told := s.stored[:n]
	s.pending, s.stored = s.pending[n:], s.stored[n:]
	if len(s.pending) == 0 {
		s.pending, s.stored = nil, nil
	}
	s.mu.Unlock()
	for _, f := range told {
		if f != nil {
			f(result)
		}
	}
}

// dropAll empties the queue, tells every waiter why, and returns how many
// changes it held.
func (s *syncer) dropAll(why error) int {
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	s.drop(n, why)
	return n
}

// changeSize estimates the memory a queued change holds.
func changeSize(ch Change) int {
	n := len(ch.Entity) + componentsSize(ch.Set)
	for _, k := range ch.Unset {
		n += len(k)
	}
	return n
}
