package transport

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/posecast/posecast/rooms"
)

// deafConn is a client socket that sends and never hears back: a client
// that sends its first flight and goes, as a flood of forged Initials does.
type deafConn struct {
	net.PacketConn
	once   sync.Once
	closed chan struct{}
}

func (c *deafConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *deafConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.PacketConn.Close()
}

// cpuTime returns the CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHalfOpenHandshakes measures what a connection attempt that never
// completes costs: each op sends one Initial from a new socket and gives
// up. Without Retry the server answers it with its whole first flight (a
// key exchange and a certificate signature); with Retry, with a Retry
// packet alone. The client's part is the same in both, so the difference
// in CPU per op (client and server, in this process) is the server's work
// that Retry saves.
func BenchmarkHalfOpenHandshakes(b *testing.B) {
	for _, c := range []struct {
		name  string
		retry int
	}{{"without_retry", 1 << 30}, {"with_retry", -1}} {
		b.Run(c.name, func(b *testing.B) {
			ts := startServer(b, func(cfg *Config, _ *rooms.Config) {
				cfg.RetryAbove = c.retry
				cfg.MaxSessionsPerIP = 1 << 20
			})
			addr := ts.Addr().(*net.UDPAddr)
			tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}
			settle := func() { time.Sleep(200 * time.Millisecond) } // the server's answers go out
			settle()
			before := cpuTime(b)
			for b.Loop() {
				udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				deaf := &deafConn{PacketConn: udp, closed: make(chan struct{})}
				tr := &quic.Transport{Conn: deaf}
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				tr.Dial(ctx, addr, tlsConf, &quic.Config{})
				cancel()
				deaf.Close() // first: Close waits for the socket's reader
				tr.Close()
			}
			settle()
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
