package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// slowConn is a UDP socket read no faster than a rate, as by a receiver
// on a slow link: what the server sends beyond the rate waits in the
// socket's small receive buffer and, past it, is lost, so that the server's
// sending to it falls behind. The rate holds from throttle on, so that the
// handshake and the join go at full speed. quic-go reads it from one
// goroutine, its Transport's.
type slowConn struct {
	net.PacketConn // the methods of the interface only: quic-go takes the socket as a plain one
	udp            *net.UDPConn
	rate           float64 // bytes a second
	on             atomic.Bool
	wake           chan struct{} // SetReadDeadline ends a wait, as quic-go's Close does
	next           time.Time     // when the reading goroutine may return the next packet
}

// newSlowConn opens a socket read at rate bytes a second once throttled.
// Its receive buffer holds about half a second at that rate.
func newSlowConn(rate float64) (*slowConn, error) {
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, err
	}
	udp.SetReadBuffer(max(4<<10, int(rate/2)))
	return &slowConn{PacketConn: udp, udp: udp, rate: rate, wake: make(chan struct{}, 1)}, nil
}

// throttle starts limiting the rate of reads.
func (c *slowConn) throttle() { c.on.Store(true) }

// ReadFrom reads a packet and, once throttled, returns it no sooner than
// the packets before it and its own bytes take at the rate.
func (c *slowConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err != nil || !c.on.Load() {
		return n, addr, err
	}
	now := time.Now()
	if c.next.Before(now) {
		c.next = now
	}
	c.next = c.next.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))
	t := time.NewTimer(c.next.Sub(now))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.wake:
	}
	return n, addr, err
}

// SetReadDeadline sets the socket's read deadline and ends a wait for the
// rate.
func (c *slowConn) SetReadDeadline(t time.Time) error {
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return c.PacketConn.SetReadDeadline(t)
}

// SetReadBuffer keeps the socket's small receive buffer, which quic-go
// would make as large as it can: the backlog a slow receiver can hold is
// the kernel's.
func (c *slowConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer sets the socket's send buffer.
func (c *slowConn) SetWriteBuffer(n int) error { return c.udp.SetWriteBuffer(n) }

// slowSockets opens n slow sockets, each with a quic.Transport over it, and
// returns a function that closes them.
func slowSockets(n int, rate float64) ([]*slowConn, []*quic.Transport, func(), error) {
	var conns []*slowConn
	trs, closeAll, err := transports(n, func() (net.PacketConn, error) {
		c, err := newSlowConn(rate)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		return c, nil
	})
	return conns, trs, closeAll, err
}

// byteRate is a flag's rate in bytes a second, written as a number of
// bytes with an optional unit: 16KB (16 000), 16KiB (16 384), 1MB, 1MiB, 500B.
type byteRate float64

var byteUnits = []struct {
	suffix string
	bytes  float64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1e3}, {"kB", 1e3}, {"MB", 1e6}, {"B", 1}}

func (r *byteRate) Set(s string) error {
	num, unit := s, 1.0
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = n, u.bytes
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a positive number of bytes (16KB, 16KiB, 1MB, 500B)", s)
	}
	*r = byteRate(v * unit)
	return nil
}

func (r *byteRate) String() string { return strconv.FormatFloat(float64(*r), 'f', -1, 64) + "B" }
