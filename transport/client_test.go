package transport

import (
	"net"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/posecast/posecast/transport/client"
)

func TestClientsCanShareOneUDPSocket(t *testing.T) {
	ts := startServer(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		tr.Close()
		udp.Close()
	})
	shared := func(c *client.Config) { c.Transport = tr }
	a, _ := join(t, ts, "lobby", "ada", shared)
	b, _ := join(t, ts, "lobby", "bob", shared)
	if a.LocalAddr().String() != b.LocalAddr().String() {
		t.Fatalf("clients on %s and %s, want one socket", a.LocalAddr(), b.LocalAddr())
	}
	roomGoesOn(t, a, b, 21)
	roomGoesOn(t, b, a, 22)
	a.Close()
	waitFor(t, b, "ada gone", func(v *client.View) bool { return v.Presence["ada"] == nil })
	roomGoesOn(t, b, b, 23) // closing one client leaves the shared socket to the other
}
