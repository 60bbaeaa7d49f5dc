package transport

import (
	"fmt"
	"testing"
)

func TestDatagramQueueDropsTheOldestWhenFull(t *testing.T) {
	q := newDatagramQueue(3)
	var dropped int
	for i := range 5 {
		if q.push([]byte{byte(i)}) {
			dropped++
		}
	}
	if dropped != 2 {
		t.Errorf("dropped %d, want 2", dropped)
	}
	var got []byte
	for b := q.pop(); b != nil; b = q.pop() {
		got = append(got, b[0])
	}
	if fmt.Sprint(got) != "[2 3 4]" {
		t.Errorf("queue held %v, want the newest [2 3 4]", got)
	}
}

func TestFrameQueueBoundsItsBacklogInBytes(t *testing.T) {
	tests := []struct {
		name    string
		pending []int // frame sizes already queued
		frame   int
		want    bool
	}{
		{"a frame under the limit is queued", nil, 100, true},
		{"a frame over the limit goes through an empty queue", nil, 5000, true},
		{"a frame that would pass the limit behind others is refused", []int{600}, 500, false},
		{"frames up to the limit are queued", []int{600}, 400, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFrameQueue(1000)
			for _, n := range tt.pending {
				if !q.push(make([]byte, n)) {
					t.Fatalf("setup push of %d refused", n)
				}
			}
			if got := q.push(make([]byte, tt.frame)); got != tt.want {
				t.Errorf("push(%d) = %v, want %v", tt.frame, got, tt.want)
			}
		})
	}
}

func TestFrameQueueCountsBytesUntilWritten(t *testing.T) {
	q := newFrameQueue(1000)
	q.push(make([]byte, 700))
	frames := q.takeAll(nil)
	if len(frames) != 1 || q.pendingBytes() != 700 {
		t.Fatalf("after take: %d frames, %d pending", len(frames), q.pendingBytes())
	}
	if q.push(make([]byte, 400)) {
		t.Error("a push past the limit went through while the taken bytes were still being written")
	}
	q.written(700)
	if !q.push(make([]byte, 400)) || q.pendingBytes() != 400 {
		t.Errorf("after write: pending %d", q.pendingBytes())
	}
	q.close()
	if q.push([]byte{1}) {
		t.Error("a closed queue took a frame")
	}
}

func TestAHeldFrameQueueGivesNothingUntilReleased(t *testing.T) {
	q := newFrameQueue(1 << 10)
	q.hold()
	if !q.push([]byte("joined")) || !q.push([]byte("entities_state")) {
		t.Fatal("a held queue refused a push")
	}
	<-q.ready // the pushes signalled; the writer wakes and must find nothing
	if got := q.takeAll(nil); len(got) != 0 {
		t.Fatalf("took %q from a held queue", got)
	}
	if q.pendingBytes() != len("joined")+len("entities_state") {
		t.Errorf("pending %d while held", q.pendingBytes())
	}
	q.release()
	select {
	case <-q.ready:
	default:
		t.Fatal("release did not wake the writer")
	}
	if got := q.takeAll(nil); len(got) != 2 || string(got[0]) != "joined" {
		t.Errorf("took %q after release, want both frames in order", got)
	}
}
