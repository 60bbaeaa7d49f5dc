package transport

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/posecast/posecast/codec"
)

// poseParts makes the parts of pose update seq: part p holds one run, the
// bytes seq and p.
func poseParts(seq uint32, n int) [][][]byte {
	parts := make([][][]byte, n)
	for p := range parts {
		parts[p] = [][]byte{{byte(seq), byte(p)}}
	}
	return parts
}

// describe names a datagram popped from a datagramQueue: "ping 7" for the
// echo of []byte{7}, "seq:part/parts" for a part of a pose update.
func describe(t *testing.T, d outDatagram) string {
	t.Helper()
	if d.echo != nil {
		return fmt.Sprintf("ping %d", d.echo[0])
	}
	if d.parts > 0 && (len(d.runs) != 1 || d.runs[0][0] != byte(d.seq) || d.runs[0][1] != d.part) {
		t.Fatalf("part %d of update %d carries the runs %v", d.part, d.seq, d.runs)
	}
	return fmt.Sprintf("%d:%d/%d", d.seq, d.part, d.parts)
}

func TestDatagramQueueSendsWholeUpdatesNewestFirst(t *testing.T) {
	// Steps: "update SEQ PARTS" (parts 0: a heartbeat), "ping N", "pop N"
	// (pop at most N datagrams), "close"; then the queue is drained.
	tests := []struct {
		name       string
		steps      []string
		want       string // every datagram popped, in order
		superseded int    // updates pushes reported replaced
		pingsLost  int    // ping echoes pushes reported dropped
	}{
		{
			name:  "an update goes out whole and in order",
			steps: []string{"update 1 3"},
			want:  "1:0/3 1:1/3 1:2/3",
		},
		{
			name:  "a heartbeat is one datagram",
			steps: []string{"update 4 0"},
			want:  "4:0/0",
		},
		{
			name:       "a newer update replaces the one waiting, whole",
			steps:      []string{"update 1 2", "update 2 3", "update 3 2"},
			want:       "3:0/2 3:1/2",
			superseded: 2,
		},
		{
			name:       "an update begun is finished before the newest goes",
			steps:      []string{"update 1 3", "pop 1", "update 2 2", "update 3 2"},
			want:       "1:0/3 1:1/3 1:2/3 3:0/2 3:1/2",
			superseded: 1,
		},
		{
			name:       "a heartbeat replaces a waiting update like any update",
			steps:      []string{"update 1 1", "pop 1", "update 2 2", "update 2 0"},
			want:       "1:0/1 2:0/0",
			superseded: 1,
		},
		{
			name:  "a ping goes out at once, between two parts, tearing nothing",
			steps: []string{"update 1 3", "pop 1", "ping 7", "pop 1", "update 2 1"},
			want:  "1:0/3 ping 7 1:1/3 1:2/3 2:0/1",
		},
		{
			name:      "a full ping queue drops the oldest echo",
			steps:     []string{"ping 1", "ping 2", "ping 3", "ping 4", "ping 5", "update 1 1"},
			want:      "ping 2 ping 3 ping 4 ping 5 1:0/1",
			pingsLost: 1,
		},
		{
			name:  "a closed session sends nothing more, not even the rest of an update",
			steps: []string{"update 1 3", "pop 1", "update 2 1", "ping 1", "close", "update 3 1", "ping 2"},
			want:  "1:0/3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newDatagramQueue()
			var got []string
			pop := func(n int) {
				for range n {
					d, ok := q.pop()
					if !ok {
						return
					}
					got = append(got, describe(t, d))
				}
			}
			superseded, pingsLost := 0, 0
			for _, step := range tt.steps {
				var op string
				var a, b int
				fmt.Sscan(step, &op, &a, &b)
				switch op {
				case "update":
					if q.push(uint32(a), poseParts(uint32(a), b)) {
						superseded++
					}
				case "ping":
					if q.pushPing([]byte{byte(a)}) {
						pingsLost++
					}
				case "pop":
					pop(a)
				case "close":
					q.close()
				default:
					t.Fatalf("step %q", step)
				}
			}
			pop(1 << 10)
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("sent %q, want %q", s, tt.want)
			}
			if superseded != tt.superseded || pingsLost != tt.pingsLost {
				t.Errorf("%d updates superseded and %d pings dropped, want %d and %d", superseded, pingsLost, tt.superseded, tt.pingsLost)
			}
			if n := q.len(); n != 0 {
				t.Errorf("%d datagrams left after draining", n)
			}
		})
	}
}

// TestASlowReceiverGetsFewerUpdatesEachWhole pushes an update of 3 parts a
// tick while the receiver takes a varying number of datagrams a tick: it
// gets whole updates only, fewer while it is slow, and every one again once
// it keeps up.
func TestASlowReceiverGetsFewerUpdatesEachWhole(t *testing.T) {
	tests := []struct {
		name  string
		pops  []int // datagrams taken at each tick, after its update is pushed
		want  string
		drops int
	}{
		{"a receiver that keeps up gets every update", []int{3, 3, 3, 3}, "1 2 3 4", 0},
		{"half the rate gets every other update", []int{2, 1, 2, 1, 2, 1, 2, 1}, "1 3 5 7", 3},
		{"a quarter of the rate gets every fourth", []int{1, 1, 1, 1, 1, 1, 1, 1, 1}, "1 4 7", 5},
		{"a receiver that drains is back on every update", []int{1, 1, 1, 1, 1, 1, 3, 3, 3, 3}, "1 4 7 8 9 10", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newDatagramQueue()
			var pushed [][][][]byte
			var got []string
			parts := map[uint32][]uint8{}
			drops := 0
			for i, n := range tt.pops {
				seq := uint32(i + 1)
				u := poseParts(seq, 3)
				pushed = append(pushed, u)
				if q.push(seq, u) {
					drops++
				}
				for range n {
					d, ok := q.pop()
					if !ok {
						break
					}
					describe(t, d)
					if d.part == 0 {
						got = append(got, fmt.Sprint(d.seq))
					}
					parts[d.seq] = append(parts[d.seq], d.part)
				}
			}
			for d, ok := q.pop(); ok; d, ok = q.pop() {
				parts[d.seq] = append(parts[d.seq], d.part)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Errorf("updates begun %q, want %q", s, tt.want)
			}
			if drops != tt.drops {
				t.Errorf("%d updates superseded, want %d", drops, tt.drops)
			}
			for seq, ps := range parts {
				if fmt.Sprint(ps) != "[0 1 2]" {
					t.Errorf("update %d went out as parts %v", seq, ps)
				}
			}
			for i, u := range pushed {
				if fmt.Sprint(u) != fmt.Sprint(poseParts(uint32(i+1), 3)) {
					t.Errorf("update %d was modified: %v", i+1, u)
				}
			}
		})
	}
}

func TestAnOutboundDatagramIsTheUpdatesPartOrTheEchoAsItIs(t *testing.T) {
	runs := [][]byte{{1, 2}, {3}}
	tests := []struct {
		name string
		d    outDatagram
		want []byte
	}{
		{"a part", outDatagram{seq: 9, part: 1, parts: 2, runs: runs}, codec.AppendPoseUpdate(nil, 9, 1, 2, runs)},
		{"a heartbeat", outDatagram{seq: 9}, codec.AppendPoseUpdate(nil, 9, 0, 0, nil)},
		{"a ping echo", outDatagram{echo: []byte{0x92, 3, 5}}, []byte{0x92, 3, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scratch := []byte("left over from the last datagram")
			if got := tt.d.appendTo(scratch[:0]); !bytes.Equal(got, tt.want) {
				t.Errorf("got % x, want % x", got, tt.want)
			}
		})
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
			q := newFrameQueue(1000, nil)
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
	q := newFrameQueue(1000, nil)
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
	q := newFrameQueue(1<<10, nil)
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

// Past the node's bound, the queues furthest behind take nothing more, the
// others go on, and what queues release leaves the node's count.
func TestTheNodesBacklogRefusesTheFurthestBehind(t *testing.T) {
	node := &nodeBacklog{limit: 3000, cut: 500}
	a, b := newFrameQueue(5000, node), newFrameQueue(5000, node)
	steps := []struct {
		name  string
		do    func() bool
		want  bool
		total int64
	}{
		{"a queues 600", func() bool { return a.push(make([]byte, 600)) }, true, 600},
		{"b queues 300", func() bool { return b.push(make([]byte, 300)) }, true, 900},
		{"a, behind, queues 2000: the node is still within", func() bool { return a.push(make([]byte, 2000)) }, true, 2900},
		{"a, behind, may not pass the node's bound", func() bool { return a.push(make([]byte, 200)) }, false, 2900},
		{"b, under the cut, may", func() bool { return b.push(make([]byte, 200)) }, true, 3100},
		{"a's frames written", func() bool { a.takeAll(nil); a.written(2600); return true }, true, 500},
		{"a queues again", func() bool { return a.push(make([]byte, 200)) }, true, 700},
		{"b's session ends", func() bool { b.discard(); return true }, true, 200},
		{"a's session ends", func() bool { a.discard(); return true }, true, 0},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Errorf("%s: %v, want %v", s.name, got, s.want)
		}
		if got := node.total.Load(); got != s.total {
			t.Errorf("%s: the node counts %d, want %d", s.name, got, s.total)
		}
	}
}
