package rooms

import (
	"bytes"
	"sync"
	"testing"
	"unsafe"

	"github.com/posecast/posecast/codec"
)

func poseRecord(time uint32, x, y, z float64, hands bool) []byte {
	p := codec.Pose{Time: time, Head: codec.Transform{Position: [3]float64{x, y, z}, Rotation: codec.Identity.Rotation}}
	if hands {
		p.HasLeft, p.Left = true, codec.Identity
		p.HasRight, p.Right = true, codec.Identity
	}
	return codec.AppendPose(nil, &p)
}

func TestPoseTableWriteAndRead(t *testing.T) {
	tab := NewPoseTable(4)
	if rec, v := tab.Read(2, nil); v != 0 || len(rec) != 0 {
		t.Fatalf("fresh slot: version %d, %d bytes", v, len(rec))
	}
	tests := []struct {
		name        string
		rec         []byte
		wantChanged bool
		wantVersion uint64
	}{
		{"a first pose is a change", poseRecord(1, 1, 2, 3, false), true, 1},
		{"the same place later is not a change", poseRecord(2, 1, 2, 3, false), false, 1},
		{"a move is a change", poseRecord(3, 1, 2, 3.5, false), true, 2},
		{"adding hands is a change", poseRecord(4, 1, 2, 3.5, true), true, 3},
		{"dropping hands is a change", poseRecord(5, 1, 2, 3.5, false), true, 4},
	}
	for _, tt := range tests {
		changed := tab.Write(2, tt.rec)
		rec, v := tab.Read(2, nil)
		if changed != tt.wantChanged || v != tt.wantVersion || tab.Version(2) != tt.wantVersion {
			t.Errorf("%s: changed %v version %d/%d, want %v %d", tt.name, changed, v, tab.Version(2), tt.wantChanged, tt.wantVersion)
		}
		if tt.wantChanged && !bytes.Equal(rec, tt.rec) {
			t.Errorf("%s: read back %x, want %x", tt.name, rec, tt.rec)
		}
	}
	if v := tab.Version(1); v != 0 {
		t.Errorf("neighbouring slot moved to version %d", v)
	}
}

// TestPoseTableReadersNeverSeeTornWrites races a writer against readers;
// every record read must be one that was written, whole.
func TestPoseTableReadersNeverSeeTornWrites(t *testing.T) {
	tab := NewPoseTable(1)
	records := make([][]byte, 64)
	for i := range records {
		records[i] = poseRecord(uint32(i), float64(i), float64(-i), float64(i*3), i%2 == 0)
	}
	valid := make(map[string]bool)
	for _, r := range records {
		valid[string(r)] = true
	}
	stop := make(chan struct{})
	var writer, readers sync.WaitGroup
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tab.Write(0, records[i%len(records)])
		}
	})
	for range 2 {
		readers.Go(func() {
			buf := make([]byte, 0, codec.MaxPoseSize)
			for range 20000 {
				rec, v := tab.Read(0, buf[:0])
				if v != 0 && !valid[string(rec)] {
					t.Errorf("torn read %x at version %d", rec, v)
					return
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	writer.Wait()
}

func TestPoseTableHotPathDoesNotAllocate(t *testing.T) {
	tab := NewPoseTable(8)
	a, b := poseRecord(1, 1, 2, 3, true), poseRecord(2, 3, 2, 1, true)
	buf := make([]byte, 0, codec.MaxPoseSize)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		if i%2 == 0 {
			tab.Write(3, a)
		} else {
			tab.Write(3, b)
		}
		buf, _ = tab.Read(3, buf[:0])
	})
	if allocs != 0 {
		t.Errorf("Write+Read: %v allocs per run, want 0", allocs)
	}
}

func BenchmarkPoseTableWrite(b *testing.B) {
	for _, tt := range []struct {
		name  string
		hands bool
	}{{"head", false}, {"head+hands", true}} {
		b.Run(tt.name, func(b *testing.B) {
			tab := NewPoseTable(64)
			recs := [2][]byte{poseRecord(1, 1, 2, 3, tt.hands), poseRecord(2, 1, 2, 3.1, tt.hands)}
			b.ReportAllocs()
			b.SetBytes(int64(len(recs[0])))
			i := 0
			for b.Loop() {
				i++
				tab.Write(7, recs[i&1])
			}
		})
	}
}

func BenchmarkPoseTableRead(b *testing.B) {
	tab := NewPoseTable(64)
	tab.Write(7, poseRecord(1, 1, 2, 3, false))
	buf := make([]byte, 0, codec.MaxPoseSize)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = tab.Read(7, buf[:0])
	}
}

func TestAPoseOfAnAvatarThatLeftNeverLandsOnTheNext(t *testing.T) {
	table := NewPoseTable(1)
	first := table.Claim(0)
	if changed, ok := table.WriteAs(0, first, poseRecord(1, 1, 1, 1, false)); !changed || !ok {
		t.Fatalf("the owner's write = %v, %v", changed, ok)
	}
	// The slot goes to another avatar; a pose of the first, checked as its
	// driver's just before, comes late.
	second := table.Claim(0)
	if changed, ok := table.WriteAs(0, first, poseRecord(2, 9, 9, 9, false)); changed || ok {
		t.Errorf("a late write of the slot's last owner = %v, %v; want refused", changed, ok)
	}
	if rec, _ := table.Read(0, nil); !bytes.Equal(rec, poseRecord(1, 1, 1, 1, false)) {
		t.Errorf("the slot holds %x", rec)
	}
	if _, ok := table.WriteAs(0, second, poseRecord(3, 2, 2, 2, false)); !ok {
		t.Error("the new owner's write was refused")
	}
}

func TestAPoseSlotIsACacheLine(t *testing.T) {
	if n := unsafe.Sizeof(poseSlot{}); n != 64 {
		t.Errorf("a pose slot is %d bytes, want 64", n)
	}
}
