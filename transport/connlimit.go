package transport

import (
	"net"
	"sync"
)

// perAddressListener bounds the connections open at once from one address
// (an IPv6 /64 as one): past the bound a new connection is closed at once,
// so that one client holding connections open cannot take the descriptors
// that everyone else's requests need.
type perAddressListener struct {
	net.Listener
	max     int
	refused func()

	mu   sync.Mutex // guards open
	open map[string]int
}

func limitPerAddress(ln net.Listener, max int, refused func()) net.Listener {
	return &perAddressListener{Listener: ln, max: max, refused: refused, open: make(map[string]int)}
}

func (l *perAddressListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addressKey(c.RemoteAddr())
		l.mu.Lock()
		full := l.open[key] >= l.max
		if !full {
			l.open[key]++
		}
		l.mu.Unlock()
		if full {
			c.Close()
			l.refused()
			continue
		}
		return &countedConn{Conn: c, release: func() {
			l.mu.Lock()
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
			l.mu.Unlock()
		}}, nil
	}
}

// countedConn gives its place back once, when it closes.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
