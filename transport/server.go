// Package transport serves posecast over WebTransport (HTTP/3 over QUIC):
// it accepts sessions, reads each one's control stream and datagrams, keeps
// an outbound queue per session so that no room ever waits on one session's
// network, and serves the HTTP side (the page, the certificate hashes,
// health and metrics). Client is the Go side of the same protocol, used by
// the tests and by posebot.
package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// Path is where the WebTransport endpoint lives on the QUIC listener.
const Path = "/wt"

// Config configures a Server. Certs and Registry are required; the zero
// value of every other field means its default.
type Config struct {
	// Listen is the UDP address of the QUIC listener. Defaults to ":4433".
	Listen string
	// HTTP is the TCP address of the plain HTTP server. Defaults to ":8080".
	HTTP string
	// Certs provides the TLS certificate of the QUIC listener.
	Certs *certs.Manager
	// Registry holds the rooms sessions join.
	Registry *rooms.Registry
	// IdleTimeout is how long a silent client keeps its session: QUIC's idle
	// timeout. The server pings at half of it, so a client that is there
	// but quiet stays. Defaults to 5s.
	IdleTimeout time.Duration
	// HelloTimeout bounds the time from the session's start to the client's
	// hello. Defaults to 10s.
	HelloTimeout time.Duration
	// MaxMessage bounds a control message from a client. Defaults to
	// codec.DefaultMaxMessage (64 KiB).
	MaxMessage int
	// MaxBacklog bounds the control bytes queued for one session; a session
	// that falls further behind is closed as a slow consumer. Defaults to 4 MiB.
	MaxBacklog int
	// MaxBacklogTotal bounds the control bytes queued for all the sessions
	// together: past it, a session with a quarter of MaxBacklog or more
	// queued is closed as a slow consumer. Defaults to 1 GiB.
	MaxBacklogTotal int
	// MaxDatagram is the largest datagram sent to a session, lowered per
	// session when its path allows less. Defaults to codec.MaxDatagramSize.
	MaxDatagram int
	// Presence, when set, is the collection that subscribe_presence and
	// /api/presence read: a cluster's, fed by every node. Defaults to one
	// fed by Registry alone.
	Presence *rooms.Collector
	// PresenceInterval is how often a presence subscription gets what
	// changed, unless it asks for another interval. Defaults to 3s.
	PresenceInterval time.Duration
	// AdvertiseURL, when set, returns the WebTransport URL that the nodes of
	// a cluster hand out for this one: /cert-hash?room= answers with it for
	// rooms that live here, so that every node names a room's node alike.
	// Without it the answer is this node's URL on the host the request
	// came to, as for /cert-hash.
	AdvertiseURL func() string
	// Ready, when set, tells /readyz whether the server's dependencies (its
	// store, its cluster) can be reached.
	Ready func(context.Context) error
	// Page is served at "/" on the HTTP address. Defaults to nothing (404).
	Page http.Handler
	// Pprof serves Go's profiler under /debug/pprof/ on the HTTP address.
	// Off by default: it tells anyone who can reach it about the server.
	Pprof bool
	// AuthSecret, when set, makes every join need a token signed with it
	// (SignToken); the user id then comes from the token, never from the
	// client. Without it the server runs in development mode: a join
	// without a token gets a user id the server makes up, and its joined
	// reply carries a token, signed with a secret the server makes at
	// start, with which a reconnect or a second device joins as that user.
	AuthSecret []byte
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may open sessions; "*" allows any. Pages served from the server's own
	// host name are always allowed, and in development mode so are pages on
	// localhost. Clients that send no Origin (not browsers) are not checked.
	AllowedOrigins []string
	// MaxSessionsPerIP bounds the QUIC connections, and so the sessions,
	// open at once from one address (an IPv6 /64 counts as one). Defaults
	// to 64.
	MaxSessionsPerIP int
	// MaxSessions bounds the QUIC connections, and so the sessions, open at
	// once on the node. Defaults to 10000.
	MaxSessions int
	// MaxHTTPConnsPerIP bounds the HTTP connections open at once from one
	// address (an IPv6 /64 counts as one). Defaults to 64.
	MaxHTTPConnsPerIP int
	// NewRoomRate bounds the rooms one address may start a second, by
	// joining a room that does not run here or through POST /api/rooms, in
	// bursts of ten seconds' worth; past it they are refused rate_limited.
	// In development mode loopback is not bounded. Defaults to 5.
	NewRoomRate float64
	// RetryAbove is how many new QUIC connections a second the node takes
	// before it makes each prove its address with a Retry; a negative value
	// makes every one. Defaults to 200.
	RetryAbove int
	// HTTPTimeout bounds reading a whole HTTP request and writing its
	// answer (server-sent event streams excepted). Defaults to 30s.
	HTTPTimeout time.Duration
	// PoseRate bounds the pose datagrams a session may send per second, in
	// bursts of up to a second's worth. Defaults to 240, twice a 120 Hz
	// headset.
	PoseRate float64
	// MessageRate bounds the control messages a session may send per second,
	// in bursts of up to a second's worth. Defaults to 50.
	MessageRate float64
	// EventRate bounds the room operations (joins, events, entity changes,
	// resyncs, presence subscriptions) among those messages, per second, in
	// bursts of up to a second's worth. Defaults to 20.
	EventRate float64
	// RateGrace is how long a session may stay over a rate limit, its excess
	// dropped, before it is closed. Defaults to 5s.
	RateGrace time.Duration
	// Logger receives the server's logs. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Certs == nil || c.Registry == nil {
		return c, errors.New("transport: Certs and Registry are required")
	}
	if c.Listen == "" {
		c.Listen = ":4433"
	}
	if c.HTTP == "" {
		c.HTTP = ":8080"
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Second
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = codec.DefaultMaxMessage
	}
	if c.MaxBacklog == 0 {
		c.MaxBacklog = 4 << 20
	}
	if c.MaxBacklogTotal == 0 {
		c.MaxBacklogTotal = 1 << 30
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = codec.MaxDatagramSize
	}
	c.MaxDatagram = max(codec.MinDatagramSize, min(codec.MaxDatagramSize, c.MaxDatagram))
	if c.MaxSessionsPerIP == 0 {
		c.MaxSessionsPerIP = 64
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 10000
	}
	if c.MaxHTTPConnsPerIP == 0 {
		c.MaxHTTPConnsPerIP = 64
	}
	if c.NewRoomRate == 0 {
		c.NewRoomRate = 5
	}
	if c.RetryAbove == 0 {
		c.RetryAbove = 200
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 30 * time.Second
	}
	if c.PoseRate == 0 {
		c.PoseRate = 240
	}
	if c.MessageRate == 0 {
		c.MessageRate = 50
	}
	if c.EventRate == 0 {
		c.EventRate = 20
	}
	if c.RateGrace == 0 {
		c.RateGrace = 5 * time.Second
	}
	if c.PresenceInterval == 0 {
		c.PresenceInterval = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PresenceInterval < minPresenceInterval || c.PresenceInterval > maxPresenceInterval {
		return c, fmt.Errorf("transport: presence interval %v not in %v..%v", c.PresenceInterval, minPresenceInterval, maxPresenceInterval)
	}
	if c.IdleTimeout < 100*time.Millisecond || c.HelloTimeout <= 0 || c.MaxMessage < 256 || c.MaxBacklog < c.MaxMessage || c.MaxBacklogTotal < c.MaxBacklog {
		return c, fmt.Errorf("transport: limits out of range in %+v", c)
	}
	return c, nil
}

// devMode reports whether the server runs without an auth secret.
func (s *Server) devMode() bool { return len(s.cfg.AuthSecret) == 0 }

// Server is a posecast node's network side. Start it, then Shutdown it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	wt      *webtransport.Server
	tlsConf *tls.Config
	quicCfg *quic.Config
	httpSrv *http.Server
	udp     net.PacketConn
	tr      *quic.Transport
	ln      *quic.EarlyListener
	// handshakes counts the connection attempts of the second
	// handshakeSecond (Unix seconds), for needRetry.
	handshakes      atomic.Int64
	handshakeSecond atomic.Int64
	tcp             net.Listener
	started         time.Time
	nextID          atomic.Uint64
	// accepting is true while the QUIC listener accepts connections.
	accepting atomic.Bool
	// testHookJoined, when set, runs after a join's room has sent joined
	// and before the session records its membership: tests widen that
	// window with it.
	testHookJoined atomic.Pointer[func()]
	// testHookSent, when set, runs after each datagram a session handed to
	// quic-go.
	testHookSent atomic.Pointer[func(*session, *outDatagram)]
	// joinSecret signs and checks join tokens: Config.AuthSecret, or in
	// development mode a random secret of this process.
	joinSecret []byte
	presence   *rooms.Collector
	// backlog is what the sessions' frame queues hold together.
	backlog    nodeBacklog
	roomStarts *roomStarts
	// stopPresence stops feeding a collection the server made itself.
	stopPresence func()
	wg           sync.WaitGroup // serving goroutines and sessions

	mu       sync.Mutex // guards the following
	sessions map[*session]struct{}
	perIP    map[string]int      // open connections by remote address (IPv6 by /64)
	conns    int                 // open connections
	ended    traffic             // what the sessions that ended moved
	hasSess  map[*quic.Conn]bool // connections that opened a session
	closing  bool
}

type quicConnKey struct{}

// NewServer checks cfg and returns a server that has not started.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		sessions:   make(map[*session]struct{}),
		perIP:      make(map[string]int),
		hasSess:    make(map[*quic.Conn]bool),
		joinSecret: cfg.AuthSecret,
	}
	s.backlog.limit, s.backlog.cut = cfg.MaxBacklogTotal, cfg.MaxBacklog/4
	if s.devMode() {
		s.joinSecret = make([]byte, 32)
		rand.Read(s.joinSecret)
	}
	s.roomStarts = newRoomStarts(cfg.NewRoomRate)
	s.presence = cfg.Presence
	if s.presence == nil {
		s.presence = rooms.NewCollector() // fed from Start to Shutdown
	}
	origins, err := newOriginChecker(cfg.AllowedOrigins, s.devMode(), func() string {
		return strconv.Itoa(s.tcp.Addr().(*net.TCPAddr).Port)
	})
	if err != nil {
		return nil, err
	}
	s.metrics = newMetrics(cfg.Registry, s.pendingBytes, s.pendingDatagrams, s.trafficTotal)
	wtMux := http.NewServeMux()
	wtMux.HandleFunc(Path, s.handleWebTransport)
	s.tlsConf = http3.ConfigureTLSConfig(cfg.Certs.TLSConfig())
	s.quicCfg = &quic.Config{
		MaxIdleTimeout:  cfg.IdleTimeout,
		KeepAlivePeriod: cfg.IdleTimeout / 2,
		// A session needs two bidirectional streams (its CONNECT and its
		// control stream) and HTTP/3's three unidirectional ones; a little
		// more is allowed and reset. Receive windows fit control messages,
		// not bulk data.
		MaxIncomingStreams:               8,
		MaxIncomingUniStreams:            8,
		MaxStreamReceiveWindow:           1 << 20,
		MaxConnectionReceiveWindow:       2 << 20,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
	}
	h3 := &http3.Server{
		TLSConfig:  s.tlsConf,
		QUICConfig: s.quicCfg,
		Handler:    wtMux,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, quicConnKey{}, c)
		},
	}
	webtransport.ConfigureHTTP3Server(h3)
	s.wt = &webtransport.Server{H3: h3, CheckOrigin: origins.check}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /cert-hash", s.handleCertHash)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	var apiToken []byte
	if len(cfg.AuthSecret) > 0 {
		apiToken = []byte(APIToken(cfg.AuthSecret))
	}
	mux.Handle("/api/", newAPI(cfg.Registry, s.presence, cfg.PresenceInterval, cfg.Logger, apiToken, s.mayStartRoom))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	if cfg.Page != nil {
		mux.Handle("/", cfg.Page)
	}
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A request that trickles in, or an answer read slowly, holds a
		// connection no longer than this.
		ReadTimeout:    cfg.HTTPTimeout,
		WriteTimeout:   cfg.HTTPTimeout,
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// ObserveTick records how late a room's tick began and how long its work
// took, for the tick metrics. Hook it to rooms.Config.OnTick.
func (s *Server) ObserveTick(late, work time.Duration) {
	s.metrics.tickLate.Observe(late.Seconds())
	s.metrics.tick.Observe(work.Seconds())
}

// Config returns the server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Start binds both listeners and serves them from goroutines the server
// owns until Shutdown.
func (s *Server) Start() error {
	udp, err := net.ListenPacket("udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("transport: listen %s/udp: %w", s.cfg.Listen, err)
	}
	tcp, err := net.Listen("tcp", s.cfg.HTTP)
	if err != nil {
		udp.Close()
		return fmt.Errorf("transport: listen %s/tcp: %w", s.cfg.HTTP, err)
	}
	s.tr = &quic.Transport{Conn: udp, VerifySourceAddress: s.needRetry, ConnContext: s.admit}
	ln, err := s.tr.ListenEarly(s.tlsConf, s.quicCfg)
	if err != nil {
		udp.Close()
		tcp.Close()
		return fmt.Errorf("transport: quic listener: %w", err)
	}
	s.udp, s.tcp, s.ln, s.started = udp, tcp, ln, time.Now()
	if s.cfg.Presence == nil {
		s.stopPresence = s.presence.Follow("local", s.cfg.Registry)
	}
	s.accepting.Store(true)
	s.wg.Go(s.acceptLoop)
	s.wg.Go(func() {
		limited := limitPerAddress(tcp, s.cfg.MaxHTTPConnsPerIP, func() { s.metrics.rejected.WithLabelValues(rejectHTTPPerIP).Inc() })
		if err := s.httpSrv.Serve(withTLSSniffing(limited, s.cfg.Certs.TLSConfig())); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", "err", err)
		}
	})
	return nil
}

// acceptLoop hands each new QUIC connection to WebTransport until the
// listener closes. It bounds the connections from one address and closes a
// connection that has not opened a session by the hello deadline: each
// connection carries one session, so that bounds sessions too. Runs in its
// own goroutine.
func (s *Server) acceptLoop() {
	defer s.accepting.Store(false)
	for {
		conn, err := s.ln.Accept(context.Background())
		if err != nil {
			if !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("quic listener stopped", "err", err)
			}
			return
		}
		s.mu.Lock()
		full := s.conns >= s.cfg.MaxSessions
		if !full {
			s.conns++
		}
		s.mu.Unlock()
		if full {
			s.metrics.rejected.WithLabelValues(rejectSessions).Inc()
			// A reason reaches the client only once the handshake is done
			// (a close during it carries none): wait for it, a little.
			s.wg.Go(func() {
				t := time.NewTimer(s.cfg.HelloTimeout)
				defer t.Stop()
				select {
				case <-conn.HandshakeComplete():
				case <-conn.Context().Done():
				case <-t.C:
				}
				conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), fmt.Sprintf("this server is full: %d sessions (--max-sessions)", s.cfg.MaxSessions))
			})
			continue
		}
		idle := time.AfterFunc(s.cfg.HelloTimeout, func() {
			s.mu.Lock()
			ok := s.hasSess[conn]
			s.mu.Unlock()
			if !ok {
				conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "no session in time")
			}
		})
		context.AfterFunc(conn.Context(), func() {
			idle.Stop()
			s.mu.Lock()
			s.conns--
			delete(s.hasSess, conn)
			s.mu.Unlock()
		})
		s.wg.Go(func() {
			if err := s.wt.ServeQUICConn(conn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// admit decides, on a connection's first packet and before its handshake
// costs anything, whether its address may open one more: the bound per
// address counts the connections still in their handshake too (none for
// this machine in development mode). It runs as quic-go's ConnContext.
func (s *Server) admit(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	if s.unbounded(info.RemoteAddr) {
		return ctx, nil
	}
	key := addressKey(info.RemoteAddr)
	s.mu.Lock()
	if s.perIP[key] >= s.cfg.MaxSessionsPerIP {
		s.mu.Unlock()
		s.metrics.rejected.WithLabelValues(rejectSessionsPerIP).Inc()
		return ctx, fmt.Errorf("too many connections from %s (--max-sessions-per-ip %d)", key, s.cfg.MaxSessionsPerIP)
	}
	s.perIP[key]++
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		if s.perIP[key]--; s.perIP[key] <= 0 {
			delete(s.perIP, key)
		}
		s.mu.Unlock()
	})
	return ctx, nil
}

// needRetry asks quic-go to validate a new connection's source address with
// a Retry (one more round trip) while handshakes come faster than
// Config.RetryAbove a second: a flood of Initials from forged addresses
// then costs a Retry packet each, not a handshake.
func (s *Server) needRetry(net.Addr) bool {
	now := time.Now().Unix()
	if s.handshakeSecond.Swap(now) != now {
		s.handshakes.Store(0)
	}
	if s.handshakes.Add(1) <= int64(s.cfg.RetryAbove) {
		return false
	}
	s.metrics.retries.Inc()
	return true
}

// unbounded reports whether addr is exempt from the per-address bounds (on
// sessions and on rooms started): in development mode, this machine, for
// local development and load tests such as posebot's.
func (s *Server) unbounded(addr net.Addr) bool {
	if !s.devMode() {
		return false
	}
	return ipOf(addr).IsLoopback()
}

// ipOf returns the IP address of a UDP or TCP address, nil for another.
func ipOf(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.TCPAddr:
		return a.IP
	}
	return nil
}

// mayStartRoom reports whether the address of addr may start one more room
// now.
func (s *Server) mayStartRoom(addr net.Addr) bool {
	if s.unbounded(addr) {
		return true
	}
	if s.roomStarts.allow(addr, time.Now()) {
		return true
	}
	s.metrics.rejected.WithLabelValues(rejectNewRooms).Inc()
	return false
}

// Addr returns the QUIC listener's address.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// HTTPAddr returns the HTTP listener's address.
func (s *Server) HTTPAddr() net.Addr { return s.tcp.Addr() }

// URL returns the WebTransport URL for a client on this machine.
func (s *Server) URL() string { return s.urlFor("127.0.0.1") }

// HTTPURL returns the HTTP server's URL for a client on this machine.
func (s *Server) HTTPURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcp.Addr().(*net.TCPAddr).Port))
}

func (s *Server) urlFor(host string) string {
	port := s.udp.LocalAddr().(*net.UDPAddr).Port
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + Path
}

// CertHashes returns the hashes of the certificate the QUIC listener serves
// now and of the one it serves after the next rotation (nil for
// certificate files).
func (s *Server) CertHashes() (current codec.CertHash, next *codec.CertHash) {
	c, n := s.cfg.Certs.Hashes()
	current = codec.CertHash{Hex: c.Hex(), Base64: c.Base64()}
	if !n.IsZero() {
		next = &codec.CertHash{Hex: n.Hex(), Base64: n.Base64()}
	}
	return current, next
}

// handleCertHash answers GET /cert-hash: where this node's WebTransport
// endpoint is and its certificate hashes; with ?room=ID, where that room
// lives: another node's endpoint and hashes, or this node's, which then
// holds the room for the join to come.
func (s *Server) handleCertHash(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	// The hashes are public; pages of any origin may read them.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if room := r.URL.Query().Get("room"); room != "" {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		// A node claims a room no node runs for the join to come; with an
		// auth secret only for someone who may join it, so that asking
		// for random rooms claims nothing.
		reserve := s.devMode()
		if !reserve {
			claims, err := VerifyToken(s.joinSecret, r.URL.Query().Get("token"), time.Now())
			reserve = err == nil && claims.Room == room
		}
		owner, here, err := s.cfg.Registry.Locate(ctx, room, reserve)
		switch {
		case errors.Is(err, rooms.ErrInvalid):
			writeJSON(w, http.StatusBadRequest, APIError{Error: err.Error()})
			return
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, APIError{Error: err.Error()})
			return
		case !here:
			writeJSON(w, http.StatusOK, codec.CertHashResponse{Location: owner})
			return
		case s.cfg.AdvertiseURL != nil:
			resp := codec.CertHashResponse{Location: codec.Location{URL: s.cfg.AdvertiseURL()}}
			resp.Current, resp.Next = s.CertHashes()
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	info := s.cfg.Certs.Current()
	resp := codec.CertHashResponse{Location: codec.Location{URL: s.urlFor(host)}, Expires: &info.NotAfter}
	resp.Current, resp.Next = s.CertHashes()
	for _, ip := range s.otherAddresses(host) {
		resp.Alternates = append(resp.Alternates, s.urlFor(ip))
	}
	writeJSON(w, http.StatusOK, resp)
}

// otherAddresses returns the machine's non-loopback IPv4 addresses other
// than host, when the QUIC listener listens on all of them.
func (s *Server) otherAddresses(host string) []string {
	ip := s.udp.LocalAddr().(*net.UDPAddr).IP
	if ip != nil && !ip.IsUnspecified() {
		return nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && n.IP.String() != host {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// handleReady answers /readyz: ready once the listeners are up and, if the
// server has a Ready check, its dependencies answer.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.accepting.Load() {
		http.Error(w, "not ready: the QUIC listener accepts no connections", http.StatusServiceUnavailable)
		return
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

// addressKey groups remote addresses for the per-address bound: an IPv4
// address, or an IPv6 /64, which one host commonly holds whole.
func addressKey(a net.Addr) string {
	ip := ipOf(a)
	if ip == nil {
		return a.String()
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// handleWebTransport upgrades a CONNECT request to a session and starts it.
func (s *Server) handleWebTransport(w http.ResponseWriter, r *http.Request) {
	conn, _ := r.Context().Value(quicConnKey{}).(*quic.Conn)
	s.mu.Lock()
	second := s.hasSess[conn]
	s.hasSess[conn] = true
	s.mu.Unlock()
	if second {
		w.WriteHeader(http.StatusTooManyRequests) // one session per connection
		return
	}
	sess, err := s.wt.Upgrade(w, r)
	if err != nil {
		s.log.Debug("webtransport upgrade refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		s.metrics.rejected.WithLabelValues(rejectUpgrade).Inc()
		w.WriteHeader(http.StatusForbidden)
		if conn != nil {
			// The connection was for this session; it has no other use.
			context.AfterFunc(r.Context(), func() {
				conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeRequestRejected), "session refused")
			})
		}
		return
	}
	ss := newSession(s, sess, conn)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		sess.CloseWithError(webtransport.SessionErrorCode(CloseServerShutdown), "server is stopping")
		return
	}
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.sessions.Inc()
	s.metrics.sessionsTotal.Inc()
	go func() {
		defer s.wg.Done()
		ss.run()
		s.mu.Lock()
		delete(s.sessions, ss)
		ss.traffic.addTo(&s.ended) // in the same step: /metrics never counts it twice or not at all
		s.mu.Unlock()
		s.metrics.sessions.Dec()
	}()
}

// pendingBytes sums the control bytes queued for every session.
func (s *Server) pendingBytes() int {
	return s.sumSessions(func(ss *session) int { return ss.fq.pendingBytes() })
}

// pendingDatagrams sums the datagrams waiting to be sent to every session.
func (s *Server) pendingDatagrams() int {
	return s.sumSessions(func(ss *session) int { return ss.dq.len() })
}

// sumSessions sums f over the open sessions.
func (s *Server) sumSessions(f func(*session) int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		n += f(ss)
	}
	return n
}

// Sessions returns the number of open sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown tells every client the server is stopping, closes their sessions
// once their queued messages are written (or ctx ends), stops both
// listeners and waits for every goroutine of the server. The rooms are the
// registry's to close, after this returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	live := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.goodbye(codec.CodeServerShutdown, "server is stopping", CloseServerShutdown)
	}
	done := make(chan struct{})
	go func() {
		for _, ss := range live {
			<-ss.ended
		}
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	err = errors.Join(err, s.httpSrv.Shutdown(ctx))
	if cerr := s.wt.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, cerr)
	}
	s.ln.Close()
	s.tr.Close()
	s.udp.Close()
	<-done
	s.wg.Wait()
	if s.stopPresence != nil {
		s.stopPresence()
	}
	return err
}
