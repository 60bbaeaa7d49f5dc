package transport

import (
	"crypto/tls"
	"net"
	"sync"
)

// The HTTP address also speaks HTTPS, with the QUIC listener's certificate:
// a headset on the LAN opens the page at https://<address>:8080 (accepting
// the self-signed certificate once), because browsers give WebTransport
// only to secure pages, and a page on a LAN address over plain HTTP is not
// one. A connection whose first byte starts a TLS handshake is served over
// TLS; any other is plain HTTP.

// tlsRecordHandshake is the first byte of every TLS ClientHello.
const tlsRecordHandshake = 0x16

// sniffListener hands out connections that choose TLS or plain HTTP by
// their first byte.
type sniffListener struct {
	net.Listener
	conf *tls.Config
}

// withTLSSniffing wraps ln so that its connections may speak TLS with conf.
func withTLSSniffing(ln net.Listener, conf *tls.Config) net.Listener {
	conf = conf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	return &sniffListener{Listener: ln, conf: conf}
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, conf: l.conf}, nil
}

// sniffConn reads its first byte on its first Read or Write (under the HTTP
// server's read deadline, so a silent client costs nothing more than
// before) and from then on is either the plain connection or a TLS server
// on it. Close closes the connection under both, without a TLS close_notify.
type sniffConn struct {
	net.Conn
	conf  *tls.Config
	once  sync.Once
	first []byte   // the byte read to decide, not yet returned
	rw    net.Conn // the connection to read and write: c.Conn or TLS on it
	err   error
}

func (c *sniffConn) sniff() {
	var b [1]byte
	n, err := c.Conn.Read(b[:])
	if n == 0 {
		c.err = err
		c.rw = c.Conn
		return
	}
	if b[0] == tlsRecordHandshake {
		c.rw = tls.Server(&prefixConn{Conn: c.Conn, prefix: b[:]}, c.conf)
		return
	}
	c.first = b[:]
	c.rw = c.Conn
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.once.Do(c.sniff)
	if c.err != nil {
		return 0, c.err
	}
	if len(c.first) > 0 && len(p) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.rw.Read(p)
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.once.Do(c.sniff)
	return c.rw.Write(p)
}

// prefixConn returns prefix before what the connection reads.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
