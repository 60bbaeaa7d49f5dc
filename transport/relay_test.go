package transport

import (
	"net"
	"sync"
	"testing"
)

// udpRelay stands between a client and the server on loopback and can move
// its server-facing side to a new address, as a NAT or a change of network
// moves a client's packets.
type udpRelay struct {
	front  *net.UDPConn
	server *net.UDPAddr
	wg     sync.WaitGroup

	mu     sync.Mutex // guards the following
	up     *net.UDPConn
	client *net.UDPAddr
	ups    int
}

func startRelay(t *testing.T, serverAddr string) *udpRelay {
	t.Helper()
	server, err := net.ResolveUDPAddr("udp", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{front: front, server: server}
	r.Rebind(t)
	r.wg.Go(r.frontLoop)
	t.Cleanup(func() {
		front.Close()
		r.mu.Lock()
		r.up.Close()
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// Addr returns the address clients dial.
func (r *udpRelay) Addr() string { return r.front.LocalAddr().String() }

// Upstreams returns how many server-facing sockets the relay has used.
func (r *udpRelay) Upstreams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ups
}

// Rebind moves the server-facing side to a new socket.
func (r *udpRelay) Rebind(t *testing.T) {
	up, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	old := r.up
	r.up = up
	r.ups++
	r.mu.Unlock()
	if old != nil {
		old.Close()
	}
	r.wg.Go(func() { r.upLoop(up) })
}

// frontLoop forwards the client's packets to the server.
func (r *udpRelay) frontLoop() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		up := r.up
		r.mu.Unlock()
		up.WriteToUDP(buf[:n], r.server)
	}
}

// upLoop forwards the server's packets on one upstream socket to the client.
func (r *udpRelay) upLoop(up *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, _, err := up.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		client := r.client
		r.mu.Unlock()
		if client != nil {
			r.front.WriteToUDP(buf[:n], client)
		}
	}
}
