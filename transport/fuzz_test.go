package transport

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// nullMember is a room member that drops what it is sent.
type nullMember struct{}

func (nullMember) SendPoses(uint32, [][][]byte) {}
func (nullMember) SendFrame([]byte)             {}
func (nullMember) MaxDatagramSize() int         { return codec.MaxDatagramSize }
func (nullMember) Close(*codec.Goodbye)         {}

// FuzzControlMessages feeds arbitrary control streams to a session's message
// handling, as readLoop would after framing them, in a room where an honest
// member stands. Whatever comes, the server must not panic, must keep what it
// queues for the session bounded, and must leave the honest member and its
// avatar alone.
func FuzzControlMessages(f *testing.F) {
	frames := func(ms ...codec.Message) []byte {
		var b []byte
		for _, m := range ms {
			var err error
			if b, err = codec.AppendFrame(b, m); err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	hello := &codec.Hello{Version: codec.Version}
	f.Add(frames(hello, &codec.Join{Room: "lobby", Token: "pc1.e30.forged"}, &codec.Event{Name: "door_opened", Data: map[string]any{"door": 1}}))
	f.Add(frames(hello, &codec.Join{Room: "lobby"}, &codec.Leave{}))
	f.Add(frames(hello, &codec.Join{Room: "lobby"}, &codec.Create{Components: codec.Components{"crate": true}}, &codec.Update{Entity: "honest", Components: codec.Components{"x": 1.0}}, &codec.Delete{Entity: "honest"}))
	f.Add(frames(hello, &codec.Join{Room: "lobby"}, &codec.Resync{}, &codec.Ping{Time: 5}, &codec.Leave{}, &codec.Join{Room: "other"}))
	f.Add(frames(&codec.Join{Room: "lobby"}))
	f.Add([]byte{0, 0, 0, 3, 0x81, 0xa1, 't'})

	log := testLogger()
	cm, err := certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		f.Fatal(err)
	}
	reg, err := rooms.NewRegistry(&rooms.MemoryStore{}, rooms.Config{Tick: time.Hour, EmptyGrace: time.Hour, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	defer reg.Close()
	srv, err := NewServer(Config{Certs: cm, Registry: reg, Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	honest, err := reg.Join(context.Background(), "lobby", nullMember{}, rooms.JoinRequest{User: "honest"})
	if err != nil {
		f.Fatal(err)
	}
	honestPose := codec.AppendPose(nil, &codec.Pose{Time: 1, Head: codec.Identity})
	if _, err := honest.UpdatePose(honestPose); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, stream []byte) {
		ss := &session{
			srv: srv, id: "fuzz", ctx: context.Background(), log: log, remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4433},
			dq: newDatagramQueue(), fq: newFrameQueue(srv.cfg.MaxBacklog, nil),
			failed: make(chan struct{}), flushed: make(chan struct{}), ended: make(chan struct{}),
		}
		ss.maxDatagram.Store(codec.MaxDatagramSize)
		rs := newReadState(&srv.cfg)
		r := bytes.NewReader(stream)
		for {
			body, err := codec.ReadFrame(r, nil, srv.cfg.MaxMessage)
			if err != nil || !ss.process(body, rs) {
				break
			}
			if p := ss.fq.pendingBytes(); p > srv.cfg.MaxBacklog+codec.DefaultMaxMessage {
				t.Fatalf("%d bytes queued for one session", p)
			}
		}
		if m := ss.membership.Swap(nil); m != nil {
			m.Leave()
		}
		room := reg.Room("lobby")
		if room == nil || room.Stats().Users < 1 {
			t.Fatal("the honest member's room is gone")
		}
		if _, err := honest.UpdatePose(honestPose); err != nil {
			t.Fatalf("the honest member lost its avatar: %v", err)
		}
	})
}
