package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/internal/pgtest"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/cluster"
	"github.com/posecast/posecast/rooms/pgstore"
	"github.com/posecast/posecast/transport"
	"github.com/posecast/posecast/transport/client"
)

// The tests run against one NATS cluster of three servers with JetStream,
// in this process, started by TestMain; each test uses buckets and subjects
// of its own (a prefix of its own).
var nats3 *natsCluster

func TestMain(m *testing.M) {
	c, err := startNATSCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "NATS cluster:", err)
		os.Exit(1)
	}
	nats3 = c
	code := pgtest.Main(m)
	c.shutdown()
	os.Exit(code)
}

// Timings shrunk for tests.
const (
	testHeartbeat = 100 * time.Millisecond
	testSuspect   = 300 * time.Millisecond
	testLeaseTTL  = 3 * time.Second
	testInterval  = 200 * time.Millisecond
	testIdle      = time.Second
)

func testLogger() *slog.Logger {
	if os.Getenv("POSECAST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// natsCluster is three NATS servers with JetStream, routed to each other.
type natsCluster struct {
	mu      sync.Mutex // guards servers
	opts    [3]*natsserver.Options
	servers [3]*natsserver.Server
	dir     string
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func startNATSCluster() (*natsCluster, error) {
	dir, err := os.MkdirTemp("", "posecast-nats-test-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	// A JetStream cluster will not start from a seed route alone: every
	// server gets all three routes.
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &natsCluster{dir: dir}
	for i := range 3 {
		c.opts[i] = &natsserver.Options{
			ServerName: fmt.Sprintf("nats%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   fmt.Sprintf("%s/nats%d", dir, i),
			Cluster:    natsserver.ClusterOpts{Name: "posecast-test", Host: "127.0.0.1", Port: ports[3+i]},
			Routes:     natsserver.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		}
	}
	for i := range 3 {
		if err := c.start(i); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, c.waitJetStream()
}

// start starts server i with its options (again, after stop).
func (c *natsCluster) start(i int) error {
	s, err := natsserver.NewServer(c.opts[i])
	if err != nil {
		return err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("NATS server %d did not start", i)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return nil
}

// stop shuts server i down.
func (c *natsCluster) stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// url returns server i's client URL.
func (c *natsCluster) url(i int) string { return "nats://127.0.0.1:" + strconv.Itoa(c.opts[i].Port) }

// waitJetStream waits until JetStream answers on every server: a request
// made before the meta leader exists hangs, so each try is short.
func (c *natsCluster) waitJetStream() error {
	deadline := time.Now().Add(60 * time.Second)
	for i := range 3 {
		nc, err := nats.Connect(c.url(i))
		if err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return err
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := js.AccountInfo(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				nc.Close()
				return fmt.Errorf("JetStream on server %d: %w", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
	return nil
}

func (c *natsCluster) shutdown() {
	for i := range 3 {
		c.stop(i)
	}
	os.RemoveAll(c.dir)
}

// tcpProxy stands between one node and its NATS server, and can pause the
// connection (bytes wait, as on a network that went silent) or cut it
// (connections close, new ones are refused).
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex // guards the following
	paused bool
	cut    bool
	resume chan struct{} // closed when a pause ends
	conns  map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: strings.TrimPrefix(target, "nats://"), conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Go(p.acceptLoop)
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.Resume()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *tcpProxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if cut || err != nil {
			c.Close()
			if up != nil {
				up.Close()
			}
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(up, c) })
		p.wg.Go(func() { p.pump(c, up) })
	}
}

// pump copies from src to dst, holding what it read while paused.
func (p *tcpProxy) pump(dst, src net.Conn) {
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			<-resume
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Pause holds every byte in both directions until Resume.
func (p *tcpProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused = true
		p.resume = make(chan struct{})
	}
}

// Resume lets bytes through again.
func (p *tcpProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
	}
}

// Cut closes the proxy's connections and refuses new ones until Restore.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.closeAll()
}

// Restore lets connections in again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// udpGate stands in front of a node's QUIC listener: clients reach the node
// through it, and Drop makes the node vanish from the network at once, as
// a machine that lost power does.
type udpGate struct {
	front  *net.UDPConn
	server *net.UDPAddr
	wg     sync.WaitGroup
	drop   atomic.Bool

	mu  sync.Mutex // guards ups
	ups map[string]*net.UDPConn
}

func startGate(t testing.TB, server net.Addr) *udpGate {
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	g := &udpGate{front: front, server: server.(*net.UDPAddr), ups: map[string]*net.UDPConn{}}
	g.wg.Go(g.frontLoop)
	t.Cleanup(func() {
		front.Close()
		g.mu.Lock()
		for _, up := range g.ups {
			up.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *udpGate) Port() int { return g.front.LocalAddr().(*net.UDPAddr).Port }

// Drop blackholes everything from now on.
func (g *udpGate) Drop() { g.drop.Store(true) }

func (g *udpGate) frontLoop() {
	buf := make([]byte, 2048)
	for {
		n, client, err := g.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if g.drop.Load() {
			continue
		}
		g.mu.Lock()
		up := g.ups[client.String()]
		if up == nil {
			up, err = net.DialUDP("udp", nil, g.server)
			if err != nil {
				g.mu.Unlock()
				continue
			}
			g.ups[client.String()] = up
			g.wg.Go(func() { g.upLoop(up, client) })
		}
		g.mu.Unlock()
		up.Write(buf[:n])
	}
}

func (g *udpGate) upLoop(up *net.UDPConn, client *net.UDPAddr) {
	buf := make([]byte, 2048)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if !g.drop.Load() {
			g.front.WriteToUDP(buf[:n], client)
		}
	}
}

// harness is one test's cluster: its prefix, its database and its nodes.
type harness struct {
	t      testing.TB
	prefix string
	dbURL  string
	secret []byte
	// Timings of the nodes: the tests' shrunk ones unless a test needs
	// others (a lease that cannot be what explains what it sees, or the
	// defaults, for benchmarks).
	leaseTTL, heartbeat, suspect, interval, idle time.Duration
	// nats are the NATS servers the nodes use, with replicas per bucket:
	// the in-process cluster unless a benchmark names another server.
	nats     [3]string
	replicas int
}

var prefixes atomic.Int64

func newHarness(t testing.TB) *harness {
	return &harness{
		t:         t,
		prefix:    fmt.Sprintf("t%d", prefixes.Add(1)),
		dbURL:     pgtest.Database(t),
		secret:    []byte("cluster test secret"),
		leaseTTL:  testLeaseTTL,
		heartbeat: testHeartbeat,
		suspect:   testSuspect,
		interval:  testInterval,
		idle:      testIdle,
		nats:      [3]string{nats3.url(0), nats3.url(1), nats3.url(2)},
		replicas:  3,
	}
}

// testNode is one posecast node: a registry, its transport server and its
// cluster node, reaching NATS through a proxy and clients through a gate.
type testNode struct {
	name      string
	h         *harness
	reg       *rooms.Registry
	srv       *transport.Server
	node      *cluster.Node
	nc        *nats.Conn
	proxies   []*tcpProxy // to each NATS server, the node's first one first
	gate      *udpGate
	store     *pgstore.Store
	collector *rooms.Collector
	certs     *certs.Manager
	stopOnce  sync.Once
}

// startNode starts a node called name whose NATS connection goes to
// server first, then to the others, each through a proxy of the node's.
func (h *harness) startNode(name string, server int) *testNode {
	t := h.t
	n, err := h.tryNode(name, server)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.node.WaitLease(ctx); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return n
}

// tryNode starts a node without waiting for its lease.
func (h *harness) tryNode(name string, server int) (*testNode, error) {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	store, err := pgstore.Open(ctx, h.dbURL)
	if err != nil {
		return nil, err
	}
	n := &testNode{name: name, h: h, store: store, collector: rooms.NewCollector()}
	var urls []string
	for i := range 3 {
		p := startProxy(t, h.nats[(server+i)%3])
		n.proxies = append(n.proxies, p)
		urls = append(urls, p.URL())
	}
	n.nc, err = nats.Connect(strings.Join(urls, ","),
		nats.Name("posecast test "+name),
		nats.DontRandomize(),
		nats.IgnoreDiscoveredServers(),
		nats.PingInterval(200*time.Millisecond),
		nats.MaxPingsOutstanding(2),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(64<<10),
	)
	if err != nil {
		store.Close()
		return nil, err
	}
	log := testLogger().With("test_node", name)
	var srv *transport.Server
	var gatePort atomic.Int64
	n.node, err = cluster.New(cluster.Config{
		Conn:      n.nc,
		NodeID:    name,
		Collector: n.collector,
		Advertise: func() codec.Location {
			loc := codec.Location{URL: fmt.Sprintf("https://127.0.0.1:%d/wt", gatePort.Load())}
			loc.Current, loc.Next = srv.CertHashes()
			return loc
		},
		Prefix:            h.prefix,
		Replicas:          h.replicas,
		HeartbeatInterval: h.heartbeat,
		SuspectAfter:      h.suspect,
		LeaseTTL:          h.leaseTTL,
		RequestTimeout:    time.Second,
		Logger:            log,
	})
	if err != nil {
		n.nc.Close()
		store.Close()
		return nil, err
	}
	n.reg, err = rooms.NewRegistry(store, rooms.Config{
		Tick:           50 * time.Millisecond,
		Placement:      n.node,
		ReconnectGrace: time.Second,
		EmptyGrace:     3 * time.Second,
		// Clients of these tests send no poses: their avatars must not go
		// stale and back, which are presence changes of their own.
		StaleAfter:   time.Hour,
		StoreTimeout: 2 * time.Second,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	cm, err := certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	srv, err = transport.NewServer(transport.Config{
		Listen:           "127.0.0.1:0",
		HTTP:             "127.0.0.1:0",
		Certs:            cm,
		Registry:         n.reg,
		IdleTimeout:      h.idle,
		MaxSessionsPerIP: 1000, // every test client is on 127.0.0.1
		AuthSecret:       h.secret,
		Presence:         n.collector,
		PresenceInterval: h.interval,
		AdvertiseURL:     func() string { return fmt.Sprintf("https://127.0.0.1:%d/wt", gatePort.Load()) },
		Ready:            func(context.Context) error { return n.node.Ready() },
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	n.srv, n.certs = srv, cm
	n.gate = startGate(t, srv.Addr())
	gatePort.Store(int64(n.gate.Port()))
	if err := n.node.Start(n.reg); err != nil {
		return nil, err
	}
	t.Cleanup(n.stop)
	return n, nil
}

// URL is the node's WebTransport URL as clients reach it.
func (n *testNode) URL() string { return fmt.Sprintf("https://127.0.0.1:%d/wt", n.gate.Port()) }

// HTTP is the node's HTTP address.
func (n *testNode) HTTP() string { return n.srv.HTTPURL() }

// stop stops the node in good order: goodbye to clients, rooms written and
// released, bye to the cluster.
func (n *testNode) stop() {
	n.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.srv.Shutdown(ctx)
		n.reg.Close()
		n.node.Close()
		n.nc.Close()
		n.store.Close()
	})
}

// crash makes the node vanish as a killed process would: its clients hear
// nothing more, its lease is not renewed, no bye and no release reach the
// cluster. (Its goroutines stop at the end of the test.)
func (n *testNode) crash() {
	n.gate.Drop()
	n.cutNATS()
}

// cutNATS closes the node's NATS connections and refuses new ones.
func (n *testNode) cutNATS() {
	for _, p := range n.proxies {
		p.Cut()
	}
}

// pauseNATS makes the node's NATS links silent; resumeNATS lets them speak.
func (n *testNode) pauseNATS() {
	for _, p := range n.proxies {
		p.Pause()
	}
}

func (n *testNode) resumeNATS() {
	for _, p := range n.proxies {
		p.Resume()
	}
}

// live reports whether the room runs on this node.
func (n *testNode) live(room string) bool { return n.reg.Room(room) != nil }

// joinToken signs a join token for user in room.
func (h *harness) joinToken(room, user string) string {
	tok, err := transport.SignToken(h.secret, transport.Claims{Room: room, User: user, Name: user, Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect joins room as user through any node's HTTP address, following
// moved, and closes the client when the test ends.
func (h *harness) connect(via *testNode, room, user string) (*client.Client, *codec.Joined) {
	h.t.Helper()
	c, joined, err := h.tryConnect(via, room, user)
	if err != nil {
		h.t.Fatalf("%s joins %s via %s: %v", user, room, via.name, err)
	}
	return c, joined
}

func (h *harness) tryConnect(via *testNode, room, user string) (*client.Client, *codec.Joined, error) {
	c, joined, err := client.Connect(testContext(h.t), client.ConnectConfig{
		HTTP:   via.HTTP(),
		Client: client.Config{Name: user, IdleTimeout: h.idle},
		Join:   codec.Join{Room: room, Device: user + "-device", Token: h.joinToken(room, user)},
	})
	if err == nil {
		h.t.Cleanup(func() { c.Close() })
	}
	return c, joined, err
}

// presenceToken signs a presence token for match.
func (h *harness) presenceToken(match string) string {
	tok, err := transport.SignToken(h.secret, transport.Claims{Watch: match, Expires: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// watch dials node and subscribes to the presence of the rooms matching.
func (h *harness) watch(node *testNode, match string) (*client.Client, uint32) {
	h.t.Helper()
	c := node.dial()
	sub, err := c.SubscribePresence(testContext(h.t), codec.SubscribePresence{Match: match, Token: h.presenceToken(match)})
	if err != nil {
		h.t.Fatal(err)
	}
	return c, sub
}

// dial opens a session to this node without joining, and closes it when
// the test ends.
func (n *testNode) dial() *client.Client {
	t := n.h.t
	t.Helper()
	current, _ := n.certs.Hashes()
	c, err := client.Dial(testContext(t), client.Config{URL: n.URL(), CertHashes: []certs.Hash{current}, Name: "test", IdleTimeout: n.h.idle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds, failing the test after a while.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getStatus returns the status and body of a GET.
func getStatus(t testing.TB, url string) (int, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}
