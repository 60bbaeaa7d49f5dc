// Command posecast is the pose server: headsets join rooms over WebTransport,
// send their head and hand poses as datagrams, and see everyone else in the
// room move.
//
// With no flags it runs on its embedded defaults: rooms in memory, one node,
// a self-signed certificate made at start and rotated before it expires.
// Every flag can also be set from the environment as POSECAST_<NAME>, with
// dashes as underscores (e.g. POSECAST_TICK=100ms); a flag on the command
// line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
	"github.com/posecast/posecast/rooms/cluster"
	"github.com/posecast/posecast/rooms/pgstore"
	"github.com/posecast/posecast/transport"
	"github.com/posecast/posecast/web"
)

type options struct {
	listen, httpAddr       string
	tick                   time.Duration
	idleTimeout            time.Duration
	reconnectGrace         time.Duration
	emptyGrace             time.Duration
	staleAfter             time.Duration
	repeat                 int
	maxMembers             int
	interest               rooms.Interest
	maxMessage             int
	maxDatagram            int
	certFile, keyFile      string
	certHosts              string
	logLevel, logFormat    string
	shutdownTimeout        time.Duration
	heartbeat, storeTimout time.Duration
	pprof                  bool
	databaseURL            string
	authSecret             string
	allowedOrigins         string
	maxSessionsPerIP       int
	maxSessions            int
	memberBytes, roomBytes int
	newRoomRate            float64
	maxHTTPConnsPerIP      int
	maxRooms               int
	poseRate, messageRate  float64
	eventRate              float64
	rateGrace              time.Duration
	presenceInterval       time.Duration
	natsURL                string
	natsEmbed              bool
	natsReplicas           int
	nodeID                 string
	advertiseURL           string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "posecast:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("posecast", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", ":4433", "UDP address of the WebTransport (HTTP/3) listener")
	fs.StringVar(&o.httpAddr, "http", ":8080", "TCP address of the HTTP server: the page, /cert-hash, /healthz, /readyz, /metrics, /api/")
	fs.DurationVar(&o.tick, "tick", 200*time.Millisecond, "how often each room sends what changed")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 5*time.Second, "how long a silent client keeps its session (QUIC idle timeout)")
	fs.DurationVar(&o.reconnectGrace, "reconnect-grace", 15*time.Second, "how long a dropped user's avatar waits for a reconnect, counted from when it was last heard")
	fs.DurationVar(&o.emptyGrace, "empty-grace", 30*time.Second, "how long an empty room lives on before it stops")
	fs.DurationVar(&o.staleAfter, "stale-after", time.Second, "how long poses may stop before an avatar is marked stale (marked at the first tick at or after it)")
	fs.DurationVar(&o.heartbeat, "heartbeat", time.Second, "how often a member sent no pose update is told the number of its latest")
	fs.IntVar(&o.repeat, "repeat", 3, "how many more ticks an avatar that stopped moving is sent again")
	fs.IntVar(&o.maxMembers, "max-members", 256, fmt.Sprintf("avatars a room holds (at most %d)", rooms.MaxRoomSize))
	fs.Float64Var(&o.interest.Radius, "interest-radius", 5, "metres on the floor within which avatars are near: a member gets the near ones at every tick, the others every --interest-far-every ticks (0: every member gets every avatar at every tick)")
	fs.IntVar(&o.interest.Nearest, "interest-nearest", 24, "how many of a member's nearest avatars are near however far they are (at least 1)")
	fs.IntVar(&o.interest.FarEvery, "interest-far-every", 4, "how many ticks apart a member gets the avatars that are not near it")
	fs.Float64Var(&o.interest.Cell, "interest-cell", 0, "side in metres of the floor cells by which rooms sort avatars (default half of --interest-radius)")
	fs.DurationVar(&o.interest.Refresh, "interest-refresh", 30*time.Second, "how often every avatar, moving or not, is sent again to every member")
	fs.Float64Var(&o.interest.FarMove, "interest-far-move", 0.1, "metres a head or hand must move before the members it is far from are sent it again")
	fs.Float64Var(&o.interest.FarTurn, "interest-far-turn", 10, "degrees a head or hand must turn before the members it is far from are sent it again")
	fs.IntVar(&o.maxMessage, "max-message", 64<<10, "largest control message accepted from a client, in bytes")
	fs.IntVar(&o.maxDatagram, "max-datagram", codec.MaxDatagramSize, fmt.Sprintf("largest datagram sent to a client, in bytes (%d to %d; lowered per session when its path takes less)", codec.MinDatagramSize, codec.MaxDatagramSize))
	fs.DurationVar(&o.storeTimout, "store-timeout", 5*time.Second, "bound on each store call")
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL URL (postgres://user:password@host:5432/db) to keep rooms and their entities in (default $DATABASE_URL; without either, rooms live in memory)")
	fs.StringVar(&o.authSecret, "auth-secret", "", "secret that join tokens are signed with (HMAC-SHA256); with it every join needs a token (see posecast token), without it the server runs in development mode")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated browser origins (https://app.example.com) that may open sessions, or * for any; the server's own pages always may, and in development mode pages on localhost")
	fs.IntVar(&o.maxSessionsPerIP, "max-sessions-per-ip", 64, "sessions open at once from one address (this machine is not bounded in development mode)")
	fs.IntVar(&o.maxSessions, "max-sessions", 10000, "sessions open at once on this node")
	fs.Float64Var(&o.newRoomRate, "new-room-rate", 5, "rooms one address may start a second, by joining rooms not running here or through POST /api/rooms (bursts of ten seconds' worth; loopback is not bounded in development mode)")
	fs.IntVar(&o.memberBytes, "member-bytes", 64<<10, "bytes a second one member's events and entity changes may make its room send to the others (bursts of four seconds' worth)")
	fs.IntVar(&o.roomBytes, "room-bytes", 256<<10, "bytes a second all of a room's members' events and entity changes together may make it send to each member (bursts of four seconds' worth)")
	fs.IntVar(&o.maxHTTPConnsPerIP, "max-http-conns-per-ip", 64, "HTTP connections open at once from one address")
	fs.IntVar(&o.maxRooms, "max-rooms", 10000, "live rooms on this node")
	fs.Float64Var(&o.poseRate, "pose-rate", 240, "pose datagrams a session may send per second (twice a 120 Hz headset)")
	fs.Float64Var(&o.messageRate, "message-rate", 50, "control messages a session may send per second")
	fs.Float64Var(&o.eventRate, "event-rate", 20, "room operations (joins, events, entity changes, resyncs, presence subscriptions) a session may send per second")
	fs.DurationVar(&o.rateGrace, "rate-grace", 5*time.Second, "how long a session may stay over a rate limit, its excess dropped, before it is closed")
	fs.DurationVar(&o.presenceInterval, "presence-interval", 3*time.Second, "how often a presence subscription (subscribe_presence, /api/presence/stream) gets what changed, unless it asks for another interval")
	fs.StringVar(&o.natsURL, "nats-url", "", "comma-separated NATS server URLs (nats://host:4222): run as a node of the cluster on them; needs --database-url and --auth-secret, the same on every node (without it: one node, no NATS)")
	fs.BoolVar(&o.natsEmbed, "nats-embed", false, "run a NATS server with JetStream inside this process, on the host and port of the first --nats-url (default nats://127.0.0.1:4222), for other nodes to join: for development only")
	fs.IntVar(&o.natsReplicas, "nats-replicas", 1, "NATS servers that keep each cluster directory bucket (3 in production, with three NATS servers)")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's name in the cluster (default: the host name and a random suffix); a restart with the same name takes over from the process before once it has been silent for 3 s, and its users are dropped at once")
	fs.StringVar(&o.advertiseURL, "advertise-url", "", "the WebTransport URL other nodes hand out for this node (default https://<first LAN address>:<--listen port>/wt)")
	fs.StringVar(&o.certFile, "cert", "", "PEM certificate chain file (with --key) instead of a self-signed certificate; reloaded when it changes")
	fs.StringVar(&o.keyFile, "key", "", "PEM private key file for --cert")
	fs.StringVar(&o.certHosts, "cert-hosts", "", "comma-separated names and addresses for the self-signed certificate (default: localhost, loopback, this machine's name and addresses)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go's profiler under /debug/pprof/ on the HTTP address (exposes internals: for load tests)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  posecast [flags]        run the server\n  posecast token [flags]  print a join, presence or API token (posecast token --help)\n\nEvery flag may also be set as POSECAST_<FLAG> in the environment (dashes as underscores).\n\n")
		fs.PrintDefaults()
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "POSECAST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.databaseURL == "" {
		o.databaseURL = os.Getenv("DATABASE_URL")
	}
	if o.maxDatagram < codec.MinDatagramSize || o.maxDatagram > codec.MaxDatagramSize {
		return nil, fmt.Errorf("--max-datagram %d: must be %d to %d", o.maxDatagram, codec.MinDatagramSize, codec.MaxDatagramSize)
	}
	switch {
	case o.interest.Radius < 0 || o.interest.Nearest < 1 || o.interest.FarEvery < 1 || o.interest.Cell < 0 || o.interest.Refresh <= 0 || o.interest.FarMove <= 0 || o.interest.FarTurn <= 0:
		return nil, fmt.Errorf("--interest-*: the radius and cell must not be negative, the nearest and far-every at least 1, the refresh, far move and far turn positive")
	case o.interest.Radius == 0:
		o.interest = rooms.Interest{Disabled: true}
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("--cert and --key go together")
	}
	if o.natsEmbed && o.natsURL == "" {
		o.natsURL = "nats://127.0.0.1:4222"
	}
	if o.natsURL != "" {
		// A room must read on one node what another wrote, and a token
		// minted for one node must open every other.
		switch {
		case o.databaseURL == "":
			return nil, errors.New("--nats-url: a cluster needs a store its nodes share: give --database-url (or DATABASE_URL); with rooms in memory a room that moves to another node would come back empty")
		case o.authSecret == "":
			return nil, errors.New("--nats-url: a cluster needs --auth-secret, the same on every node: development mode's made-up secret differs per node, so a token from one node would fail on another")
		}
		if o.nodeID == "" {
			host, _ := os.Hostname()
			o.nodeID = defaultNodeID(host)
		}
		if !rooms.ValidID(o.nodeID) {
			return nil, fmt.Errorf("--node-id %q: want 1 to 64 of A-Z a-z 0-9 _ . : @ -", o.nodeID)
		}
	}
	return &o, nil
}

func newLogger(o *options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "token" {
		err := mintToken(args[1:], os.Stdout)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(o)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	raiseFileLimit(log)
	// From here on a signal asks for an orderly stop, even during start-up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var cm *certs.Manager
	if o.certFile != "" {
		cm, err = certs.LoadFiles(o.certFile, o.keyFile)
	} else {
		var hosts []string
		if o.certHosts != "" {
			hosts = strings.Split(o.certHosts, ",")
		}
		cm, err = certs.NewSelfSigned(certs.SelfSignedConfig{Hosts: hosts})
	}
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}

	store, storeReady, closeStore, err := openStore(ctx, o.databaseURL, log)
	if err != nil {
		return err
	}
	defer closeStore()        // after the registry has written its last changes
	var srv *transport.Server // the hooks reach it once it exists
	presence := rooms.NewCollector()
	var registry *rooms.Registry
	var node *cluster.Node
	if o.natsURL != "" {
		var leave func()
		node, leave, err = joinCluster(o, presence, func() codec.Location { return advertise(o, srv) }, func() (int, int) {
			return srv.Sessions(), len(registry.Rooms())
		}, log)
		if err != nil {
			return err
		}
		defer leave() // after the registry has released its claims
	}
	ready := func(ctx context.Context) error {
		if storeReady != nil {
			if err := storeReady(ctx); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if node != nil {
			return node.Ready()
		}
		return nil
	}
	var placement rooms.Placement
	if node != nil {
		placement = node
	}
	registry, err = rooms.NewRegistry(store, rooms.Config{
		Placement:      placement,
		Tick:           o.tick,
		RepeatTicks:    o.repeat,
		Heartbeat:      o.heartbeat,
		StaleAfter:     o.staleAfter,
		ReconnectGrace: o.reconnectGrace,
		EmptyGrace:     o.emptyGrace,
		MaxMembers:     o.maxMembers,
		Interest:       o.interest,
		StoreTimeout:   o.storeTimout,
		MaxRooms:       o.maxRooms,
		MemberBytes:    o.memberBytes,
		RoomBytes:      o.roomBytes,
		OnTick: func(late, work time.Duration) {
			if srv != nil {
				srv.ObserveTick(late, work)
			}
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	var origins []string
	for _, origin := range strings.Split(o.allowedOrigins, ",") {
		if origin = strings.TrimSpace(origin); origin != "" {
			origins = append(origins, origin)
		}
	}
	srv, err = transport.NewServer(transport.Config{
		Listen:      o.listen,
		HTTP:        o.httpAddr,
		Certs:       cm,
		Registry:    registry,
		IdleTimeout: o.idleTimeout,
		MaxMessage:  o.maxMessage,
		MaxDatagram: o.maxDatagram,
		Page:        web.Handler(),
		Pprof:       o.pprof,
		Ready:       ready,
		Logger:      log,

		Presence:         presence,
		PresenceInterval: o.presenceInterval,
		AdvertiseURL:     advertiseURL(o, node, &srv),

		AuthSecret:        []byte(o.authSecret),
		AllowedOrigins:    origins,
		MaxSessionsPerIP:  o.maxSessionsPerIP,
		MaxSessions:       o.maxSessions,
		MaxHTTPConnsPerIP: o.maxHTTPConnsPerIP,
		NewRoomRate:       o.newRoomRate,
		PoseRate:          o.poseRate,
		MessageRate:       o.messageRate,
		EventRate:         o.eventRate,
		RateGrace:         o.rateGrace,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	logStart(log, srv, cm)
	if node == nil {
		defer presence.Follow("local", registry)()
	} else if err := startNode(ctx, node, registry, log); err != nil {
		srv.Shutdown(context.Background())
		registry.Close()
		return err
	}
	if o.authSecret == "" {
		log.Warn("development mode: no --auth-secret, so joins need no token: anyone who reaches this server can join any room, as a user it makes up; pages on localhost may connect")
	} else {
		log.Info("joins need a token signed with --auth-secret", "allowed_origins", origins)
	}

	var certLoop sync.WaitGroup
	certLoop.Go(func() {
		err := cm.Run(ctx, func(info certs.Info) {
			log.Info("certificate changed; new sessions get the new one", certAttrs(info)...)
		})
		if err != nil {
			log.Error("certificate rotation stopped; the current certificate is served until it expires", "err", err, "expires", cm.Current().NotAfter)
		}
	})
	<-ctx.Done()
	stop()
	log.Info("shutting down: telling clients, closing sessions")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	log.Info("stopping rooms, writing pending changes to the store")
	registry.Close()
	certLoop.Wait()
	log.Info("stopped")
	return nil
}

// mintToken prints a join token (posecast token --room R --user U --ttl 1h)
// or a presence token (posecast token --watch '^lobby:'). The secret comes
// from --auth-secret or POSECAST_AUTH_SECRET.
func mintToken(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("posecast token", flag.ContinueOnError)
	room := fs.String("room", "", "the room the token admits to")
	user := fs.String("user", "", "the user id the token's holder joins as")
	name := fs.String("name", "", "the display name (default: the client's choice)")
	apiToken := fs.Bool("api", false, "instead of a join token, print the rooms API's bearer token (derived from the secret)")
	watch := fs.String("watch", "", "instead of a join token, a presence token for subscribe_presence with exactly this match (a Go regular expression)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	secret := fs.String("auth-secret", os.Getenv("POSECAST_AUTH_SECRET"), "the server's --auth-secret (default $POSECAST_AUTH_SECRET)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  posecast token --room R --user U [--name N] [--ttl 1h]  a join token\n  posecast token --watch PATTERN [--ttl 1h]              a presence token\n  posecast token --api                                    the rooms API's bearer token\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("token: no --auth-secret or POSECAST_AUTH_SECRET")
	}
	if *apiToken {
		_, err := fmt.Fprintln(out, transport.APIToken([]byte(*secret)))
		return err
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	tok, err := transport.SignToken([]byte(*secret), transport.Claims{Room: *room, User: *user, Name: *name, Watch: *watch, Expires: time.Now().Add(*ttl).Unix()})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

// openStore opens the PostgreSQL store at databaseURL, applying the
// migrations it lacks, or without a URL returns the in-memory store, and
// says which serves. It returns the store's readiness check (nil for the
// in-memory store) and what closes it.
func openStore(ctx context.Context, databaseURL string, log *slog.Logger) (rooms.Store, func(context.Context) error, func(), error) {
	if databaseURL == "" {
		log.Info("store: in memory; rooms and their entities last as long as this process (--database-url or DATABASE_URL keeps them in PostgreSQL)")
		return &rooms.MemoryStore{}, nil, func() {}, nil
	}
	// Connecting and migrating may take a while on a busy database; a
	// signal still cuts it short.
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(octx, databaseURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("store: %w", err)
	}
	var applied []string
	for _, m := range s.Applied() {
		applied = append(applied, fmt.Sprintf("%d_%s", m.Version, m.Name))
	}
	log.Info("store: PostgreSQL; rooms and their entities outlive this process", "database", pgstore.Describe(databaseURL), "migrations_applied", applied)
	return s, s.Ping, s.Close, nil
}

func certAttrs(info certs.Info) []any {
	return []any{
		"key", info.KeyType,
		"valid_from", info.NotBefore.Format(time.RFC3339),
		"valid_until", info.NotAfter.Format(time.RFC3339),
		"validity", info.Validity().String(),
		"sha256_hex", info.Hash.Hex(),
		"sha256_base64", info.Hash.Base64(),
	}
}

func logStart(log *slog.Logger, srv *transport.Server, cm *certs.Manager) {
	info := cm.Current()
	log.Info("certificate", certAttrs(info)...)
	if info.SelfSigned && (info.KeyType != "ECDSA P-256" || info.Validity() > certs.MaxValidity) {
		log.Warn("browsers refuse this certificate by hash: WebTransport's serverCertificateHashes wants ECDSA P-256 valid for at most 14 days")
	}
	httpAddr := srv.HTTPAddr().(*net.TCPAddr)
	log.Info("posecast is up",
		"webtransport", srv.URL(),
		"http", srv.HTTPURL(),
		"cert_hash_endpoint", srv.HTTPURL()+"/cert-hash",
	)
	if !httpAddr.IP.IsUnspecified() {
		return // listening on one address only: the LAN cannot reach the page
	}
	httpPort := httpAddr.Port
	for _, ip := range lanAddresses() {
		// Pages on other machines need HTTPS for WebTransport; the HTTP port
		// serves it too.
		log.Info("reachable on the LAN", "page", "https://"+net.JoinHostPort(ip, strconv.Itoa(httpPort)))
	}
}

// lanAddresses returns this machine's non-loopback IPv4 addresses.
func lanAddresses() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			out = append(out, n.IP.String())
		}
	}
	return out
}
