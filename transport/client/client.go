package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/posecast/posecast/certs"
	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// Config configures Dial. URL is required.
type Config struct {
	// URL is the server's WebTransport URL, https://host:port/wt.
	URL string
	// CertHashes are the SHA-256 hashes of the certificates to accept, as a
	// browser's serverCertificateHashes. When empty, the server's certificate
	// must chain to the system's roots.
	CertHashes []certs.Hash
	// Name is sent in hello as the client's name.
	Name string
	// Origin, when set, is sent as the session request's Origin header, as a
	// browser page on that origin would.
	Origin string
	// MaxMessage bounds a control message from the server. Defaults to 16 MiB.
	MaxMessage int
	// IdleTimeout is the QUIC idle timeout; the client pings at half of it.
	// Defaults to 5s.
	IdleTimeout time.Duration
	// DropDatagram, when set, is asked about every pose update received and
	// drops it when it returns true, as a lossy network would. Tests use it.
	DropDatagram func() bool
	// Transport, when set, carries the session's QUIC connection, so that
	// many clients share one UDP socket; the client does not close it.
	// Without it, each client has a socket of its own.
	Transport *quic.Transport
	// OnPoses, when set, is called from the datagram goroutine for every pose
	// record received, with the time it arrived. It must return quickly and
	// must not keep rec.
	OnPoses func(slot uint16, rec []byte, received time.Time)
	// OnPoseUpdate, when set, is called from the datagram goroutine for
	// every pose update received (heartbeats included), before OnPoses is
	// called for its records: load tests follow seq and parts with it. It
	// must return quickly and must not keep u.Records.
	OnPoseUpdate func(u codec.PoseUpdate, received time.Time)
	// SkipPoses keeps received poses out of the view (View.Poses holds only
	// the poses of the room's snapshots and creates), for load tests that
	// take them through OnPoses. Loss tracking and resyncs go on.
	SkipPoses bool
}

// Client is a Go client of the posecast protocol: it dials a server, says
// hello, joins a room, sends poses and keeps a View of the room from what
// the server sends. Its methods are safe for concurrent use.
type Client struct {
	cfg     Config
	udp     net.PacketConn // nil when the transport is shared
	tr      *quic.Transport
	conn    *quic.Conn
	sess    *webtransport.Session
	ctl     *webtransport.Stream
	welcome codec.Welcome
	nextRef atomic.Uint32
	wg      sync.WaitGroup // readLoop and datagramLoop
	traffic struct {
		datagramsSent, datagramsReceived, bytesSent, bytesReceived atomic.Uint64
		messagesSent, messagesReceived                             atomic.Uint64
	}

	// tickPeriod is the room's tick period (the server's, before a join),
	// in nanoseconds. tickArrivals are when the latest ticks' first pose
	// datagrams arrived, in Unix nanoseconds (0 for none), written in turn
	// at tickArrivalN: the pacer's phase.
	tickPeriod   atomic.Int64
	tickArrivals [8]atomic.Int64
	tickArrivalN atomic.Uint32
	// ownSlot is the joined avatar's slot (-1 before a join). sentPoses
	// holds the times of the last two poses sent (the older in the high
	// half), sentCount counts them, and sentMoved says whether the last
	// moved from the one before; margin is how long before the tick the
	// pacer aims a pose, in nanoseconds, adjusted by judgeOwnPose.
	ownSlot   atomic.Int32
	sentPoses atomic.Uint64
	sentCount atomic.Uint32
	sentMoved atomic.Bool
	margin    atomic.Int64
	// judged is the pose update and the count of poses sent at the last
	// judgement; only the datagram goroutine uses them.
	judgedSeq   uint32
	judgedCount uint32

	wmu      sync.Mutex // serializes control stream writes and guards poseBuf and lastPose
	poseBuf  []byte
	lastPose []byte // the record of the last pose sent

	mu    sync.Mutex // guards the following
	view  View
	slots map[uint16]string // slot -> avatar entity
	// avatarSlots is slots backwards: avatar entity -> slot.
	avatarSlots map[string]uint16
	// changed is closed on the next change, for WaitFor; nil while no one
	// waits, so that a change costs nothing then.
	changed   chan struct{}
	waiters   map[uint32]chan codec.Message
	repeat    int
	seqs      map[uint32]*partSet // pose updates not yet complete
	resyncing bool                // a resync was asked for and its state has not come
	resyncAt  time.Time           // when it was asked for
	closeErr  error
}

// View is what a client knows of its room. Poses are by avatar entity id.
type View struct {
	Session string
	Room    string
	User    string
	Slot    int
	// Token is the joined reply's token, from a server in development
	// mode: joining Room with it again is joining as the same user.
	Token    string
	Entities map[string]codec.Components
	Presence map[string][]codec.PresenceMeta
	Poses    map[string]RemotePose
	Events   []codec.Event
	Errors   []codec.Error
	Goodbye  *codec.Goodbye
	// Seq is the newest pose update received whole.
	Seq uint32
	// PoseUpdates and Heartbeats count the pose datagrams received.
	PoseUpdates, Heartbeats int
	// Resyncs counts the resyncs the client asked for.
	Resyncs int
	// Collections are the presence subscriptions' views, by subscription
	// (the ref of its subscribe_presence): room -> user -> metas.
	Collections map[uint32]map[string]rooms.RoomPresence
	// CollectionMessages counts the presence_collection messages received.
	CollectionMessages int
	// Closed is true once the session has ended.
	Closed bool
}

// RemotePose is the latest pose received for an avatar.
type RemotePose struct {
	codec.Pose
	Received time.Time
	// Seq is the pose update that carried it, or the seq of the
	// entities_state it came in. Poses are ordered by it, the server's own
	// order, not by the sender's clock.
	Seq uint32
}

// partSet tracks which parts of one pose update arrived.
type partSet struct {
	got   [4]uint64
	count int
	parts int
}

// FetchCertHash asks a server's HTTP address (http://host:port) for its
// WebTransport URL and certificate hashes.
func FetchCertHash(ctx context.Context, httpURL string) (codec.CertHashResponse, []certs.Hash, error) {
	return fetchCertHash(ctx, httpURL+"/cert-hash")
}

// LocateRoom asks a server's HTTP address (http://host:port) where a room
// lives: the WebTransport URL and certificate hashes of the node that runs
// it, or will run it once joined. token, a join token for the room, lets a
// server with an auth secret hold the room for the join.
func LocateRoom(ctx context.Context, httpURL, room, token string) (codec.Location, error) {
	q := url.Values{"room": {room}}
	if token != "" {
		q.Set("token", token)
	}
	resp, _, err := fetchCertHash(ctx, httpURL+"/cert-hash?"+q.Encode())
	return resp.Location, err
}

func fetchCertHash(ctx context.Context, u string) (codec.CertHashResponse, []certs.Hash, error) {
	var resp codec.CertHashResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return resp, nil, err
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp, nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		var apiErr struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&apiErr)
		return resp, nil, fmt.Errorf("GET %s: %s %s", u, r.Status, apiErr.Error)
	}
	if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
		return resp, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	hashes, err := locationHashes(resp.Current, resp.Next)
	if err != nil {
		return resp, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp, hashes, nil
}

// locationHashes decodes the hashes of a location.
func locationHashes(current codec.CertHash, next *codec.CertHash) ([]certs.Hash, error) {
	var hashes []certs.Hash
	for _, h := range []*codec.CertHash{&current, next} {
		if h == nil {
			continue
		}
		b, err := hex.DecodeString(h.Hex)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("bad certificate hash %q", h.Hex)
		}
		hashes = append(hashes, certs.Hash(b))
	}
	return hashes, nil
}

// ConnectConfig configures Connect.
type ConnectConfig struct {
	// HTTP is the HTTP address (http://host:port) of any node, asked where
	// the room lives.
	HTTP string
	// Location, when set, is where to try first: the one a moved goodbye
	// named, say.
	Location *codec.Location
	// Client configures each session; Connect sets its URL and hashes.
	Client Config
	// Join is the join to make.
	Join codec.Join
	// MaxMoves bounds the moved answers followed. Defaults to 3.
	MaxMoves int
}

// Connect opens a session where the room of cfg.Join lives and joins it,
// following moved answers: it asks a node where the room is, dials that
// node, and when the join is answered moved (the room went elsewhere
// meanwhile), dials the node named and joins again.
func Connect(ctx context.Context, cfg ConnectConfig) (*Client, *codec.Joined, error) {
	if cfg.MaxMoves == 0 {
		cfg.MaxMoves = 3
	}
	loc := cfg.Location
	for moves := 0; ; moves++ {
		if loc == nil || loc.URL == "" {
			l, err := LocateRoom(ctx, cfg.HTTP, cfg.Join.Room, cfg.Join.Token)
			if err != nil {
				return nil, nil, err
			}
			loc = &l
		}
		hashes, err := locationHashes(loc.Current, loc.Next)
		if err != nil {
			return nil, nil, err
		}
		ccfg := cfg.Client
		ccfg.URL, ccfg.CertHashes = loc.URL, hashes
		c, err := Dial(ctx, ccfg)
		if err != nil {
			return nil, nil, err
		}
		joined, err := c.Join(ctx, cfg.Join)
		var rerr *RequestError
		if err == nil {
			return c, joined, nil
		}
		c.Close()
		if !errors.As(err, &rerr) || rerr.Code != codec.CodeMoved || moves >= cfg.MaxMoves {
			return nil, nil, err
		}
		loc = rerr.Moved
	}
}

// Dial opens a session with the server at cfg.URL, opens the control stream
// and says hello. It returns once the server has welcomed the client.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = 16 << 20
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	c := &Client{
		cfg:         cfg,
		tr:          cfg.Transport,
		waiters:     make(map[uint32]chan codec.Message),
		slots:       make(map[uint16]string),
		avatarSlots: make(map[string]uint16),
		seqs:        make(map[uint32]*partSet),
	}
	c.ownSlot.Store(-1)
	if c.tr == nil {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		c.udp, c.tr = udp, &quic.Transport{Conn: udp}
	}
	if err := c.dial(ctx); err != nil {
		c.closeSockets()
		return nil, err
	}
	return c, nil
}

func (c *Client) dial(ctx context.Context) error {
	tlsConf := &tls.Config{NextProtos: []string{http3.NextProtoH3}}
	if len(c.cfg.CertHashes) > 0 {
		hashes := c.cfg.CertHashes
		tlsConf.InsecureSkipVerify = true // replaced by the hash check below
		tlsConf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 && slices.Contains(hashes, certs.HashOf(raw[0])) {
				return nil
			}
			return errors.New("server certificate matches none of the expected hashes")
		}
	}
	d := &webtransport.Transport{
		TLSClientConfig: tlsConf,
		QUICConfig: &quic.Config{
			MaxIdleTimeout:                   c.cfg.IdleTimeout,
			KeepAlivePeriod:                  c.cfg.IdleTimeout / 2,
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
		DialAddr: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			conn, err := c.tr.DialEarly(ctx, ua, tlsConf, conf)
			c.conn = conn
			return conn, err
		},
	}
	var header http.Header
	if c.cfg.Origin != "" {
		header = http.Header{"Origin": {c.cfg.Origin}}
	}
	rsp, sess, err := d.Dial(ctx, c.cfg.URL, header)
	if err != nil {
		if rsp != nil {
			return fmt.Errorf("dial %s: %s: %w", c.cfg.URL, rsp.Status, err)
		}
		return fmt.Errorf("dial %s: %w", c.cfg.URL, err)
	}
	c.sess = sess
	ctl, err := sess.OpenStreamSync(ctx)
	if err != nil {
		sess.CloseWithError(0, "")
		return fmt.Errorf("open control stream: %w", err)
	}
	c.ctl = ctl
	c.wg.Go(c.readLoop)
	c.wg.Go(c.datagramLoop)
	reply, err := c.Request(ctx, &codec.Hello{Version: codec.Version, Client: c.cfg.Name})
	if err != nil {
		c.Close()
		return fmt.Errorf("hello: %w", err)
	}
	w, ok := reply.(*codec.Welcome)
	if !ok {
		c.Close()
		return fmt.Errorf("hello: answered with %T", reply)
	}
	c.tickPeriod.Store(int64(time.Duration(w.TickMillis) * time.Millisecond))
	c.mu.Lock()
	c.welcome = *w
	c.repeat = w.Repeat
	c.view.Session = w.Session
	c.mu.Unlock()
	return nil
}

// Location returns where the client is connected: the server's
// WebTransport URL and the certificate hashes it accepts.
func (c *Client) Location() codec.Location {
	loc := codec.Location{URL: c.cfg.URL}
	for i, h := range c.cfg.CertHashes {
		j := codec.CertHash{Hex: h.Hex(), Base64: h.Base64()}
		switch i {
		case 0:
			loc.Current = j
		case 1:
			loc.Next = &j
		}
	}
	return loc
}

// Welcome returns the server's answer to hello.
func (c *Client) Welcome() codec.Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Send writes one control message. It sets a ref on requests that have
// none only through Request.
func (c *Client) Send(m codec.Message) error {
	frame, err := codec.EncodeFrame(m)
	if err != nil {
		return err
	}
	return c.SendRaw(frame)
}

// SendRaw writes bytes to the control stream as they are. Tests use it to
// send what a well-behaved client would not.
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.ctl.Write(b)
	c.traffic.messagesSent.Add(1)
	c.traffic.bytesSent.Add(uint64(n))
	return err
}

// Request sends m with a fresh ref and waits for the server's answer with
// that ref: an error answer comes back as a *codec.Error error.
func (c *Client) Request(ctx context.Context, m codec.Message) (codec.Message, error) {
	ref := c.nextRef.Add(1)
	ch := make(chan codec.Message, 1)
	c.mu.Lock()
	c.waiters[ref] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, ref)
		c.mu.Unlock()
	}()
	codec.SetRef(m, ref)
	if err := c.Send(m); err != nil {
		return nil, err
	}
	select {
	case reply := <-ch:
		if e, ok := reply.(*codec.Error); ok {
			return nil, &RequestError{Code: e.Code, Message: e.Message, Moved: e.Moved}
		}
		return reply, nil
	case <-c.sess.Context().Done():
		return nil, fmt.Errorf("session ended: %w", context.Cause(c.sess.Context()))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// RequestError is the server's error answer to a request.
type RequestError struct {
	Code    string
	Message string
	// Moved, with code moved, is where the room lives.
	Moved *codec.Location
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// Join joins a room and returns the server's joined answer. By the time it
// returns, the view holds the room's entities and presence.
func (c *Client) Join(ctx context.Context, j codec.Join) (*codec.Joined, error) {
	reply, err := c.Request(ctx, &j)
	if err != nil {
		return nil, err
	}
	joined, ok := reply.(*codec.Joined)
	if !ok {
		return nil, fmt.Errorf("join: answered with %T", reply)
	}
	// The room sends entities_state and presence_state right after joined.
	err = c.WaitFor(ctx, func(v *View) bool { return v.Entities != nil && v.Presence != nil })
	return joined, err
}

// Leave leaves the room; the session stays open.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.Request(ctx, &codec.Leave{})
	if err == nil {
		c.mu.Lock()
		c.view.Room, c.view.Entities, c.view.Presence, c.view.Poses = "", nil, nil, nil
		c.view.User, c.view.Slot, c.view.Token = "", 0, ""
		clear(c.slots)
		clear(c.avatarSlots)
		c.notifyLocked()
		c.mu.Unlock()
	}
	return err
}

// Publish sends an application event to the room and waits for the ok.
func (c *Client) Publish(ctx context.Context, name string, data any) error {
	_, err := c.Request(ctx, &codec.Event{Name: name, Data: data})
	return err
}

// UpdatePresence replaces the application meta of this device's presence
// (presence_update); the room sees the change at its next tick.
func (c *Client) UpdatePresence(ctx context.Context, meta map[string]any) error {
	_, err := c.Request(ctx, &codec.PresenceUpdate{Meta: meta})
	return err
}

// CreateEntity creates an environment entity and returns its id.
func (c *Client) CreateEntity(ctx context.Context, components codec.Components) (string, error) {
	reply, err := c.Request(ctx, &codec.Create{Components: components})
	if err != nil {
		return "", err
	}
	ok, _ := reply.(*codec.OK)
	if ok == nil {
		return "", fmt.Errorf("create: answered with %T", reply)
	}
	return ok.Entity, nil
}

// SendPose sends the client's pose as a datagram.
func (c *Client) SendPose(p *codec.Pose) error {
	c.wmu.Lock()
	c.poseBuf = codec.AppendPoseDatagram(c.poseBuf[:0], p)
	err := c.SendDatagram(c.poseBuf)
	if err == nil {
		rec := c.poseBuf[len(c.poseBuf)-p.Size():] // the datagram ends with the record
		c.sentMoved.Store(!codec.SamePlace(rec, c.lastPose))
		c.lastPose = append(c.lastPose[:0], rec...)
		c.sentPoses.Store(c.sentPoses.Load()<<32 | uint64(p.Time))
		c.sentCount.Add(1)
	}
	c.wmu.Unlock()
	return err
}

// SendDatagram sends b as a datagram as it is.
func (c *Client) SendDatagram(b []byte) error {
	if err := c.sess.SendDatagram(b); err != nil {
		return err
	}
	c.traffic.datagramsSent.Add(1)
	c.traffic.bytesSent.Add(uint64(len(b)))
	return nil
}

// TickPeriod returns the period of the room's tick, from joined (the
// server's, from welcome, before a join).
func (c *Client) TickPeriod() time.Duration { return time.Duration(c.tickPeriod.Load()) }

// tickPhase returns the earliest that the latest ticks' first pose
// datagrams arrived, each moved by whole periods to the newest one's: the
// time a tick's datagram arrives when nothing delays it, which the pacer
// steps from. Delays only ever make a datagram later, so the earliest of a
// few is the truest. It reports false before any has arrived since the join.
func (c *Client) tickPhase() (time.Time, bool) {
	period := c.tickPeriod.Load()
	newest := c.tickArrivals[c.tickArrivalN.Load()%uint32(len(c.tickArrivals))].Load()
	if newest == 0 || period <= 0 {
		return time.Time{}, false
	}
	phase := newest
	for i := range c.tickArrivals {
		a := c.tickArrivals[i].Load()
		if a == 0 {
			continue
		}
		a += (newest - a + period/2) / period * period // to the newest one's period
		phase = min(phase, a)
	}
	return time.Unix(0, phase), true
}

// Traffic is what a client has sent and received. Bytes count datagram
// payloads and control frames, not QUIC's own overhead.
type Traffic struct {
	DatagramsSent, DatagramsReceived uint64
	MessagesSent, MessagesReceived   uint64
	BytesSent, BytesReceived         uint64
}

// Traffic returns the client's counters so far.
func (c *Client) Traffic() Traffic {
	t := &c.traffic
	return Traffic{
		DatagramsSent: t.datagramsSent.Load(), DatagramsReceived: t.datagramsReceived.Load(),
		MessagesSent: t.messagesSent.Load(), MessagesReceived: t.messagesReceived.Load(),
		BytesSent: t.bytesSent.Load(), BytesReceived: t.bytesReceived.Load(),
	}
}

// View returns a copy of what the client knows of its room.
func (c *Client) View() View {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.view
	v.Entities = maps.Clone(v.Entities)
	v.Presence = maps.Clone(v.Presence)
	v.Poses = maps.Clone(v.Poses)
	v.Events = slices.Clone(v.Events)
	v.Errors = slices.Clone(v.Errors)
	if v.Collections != nil {
		v.Collections = make(map[uint32]map[string]rooms.RoomPresence, len(c.view.Collections))
		for sub, col := range c.view.Collections {
			cc := make(map[string]rooms.RoomPresence, len(col))
			for room, users := range col {
				cc[room] = maps.Clone(users)
			}
			v.Collections[sub] = cc
		}
	}
	return v
}

// WaitFor waits until cond holds for the view, or ctx ends. cond runs with
// the client's lock held and must not keep the view.
func (c *Client) WaitFor(ctx context.Context, cond func(*View) bool) error {
	for {
		c.mu.Lock()
		ok := cond(&c.view)
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		closed := c.view.Closed
		c.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return errors.New("session ended")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Session returns the client's WebTransport session, for callers that
// open streams of their own beside the protocol's.
func (c *Client) Session() *webtransport.Session { return c.sess }

// Done is closed when the session ends.
func (c *Client) Done() <-chan struct{} { return c.sess.Context().Done() }

// Close closes the session in good order, without leaving the room first,
// and waits for the client's goroutines.
func (c *Client) Close() error {
	c.sess.CloseWithError(0, "")
	c.wg.Wait()
	return c.closeSockets()
}

// closeSockets closes the client's own socket, if it has one.
func (c *Client) closeSockets() error {
	if c.udp == nil {
		return nil
	}
	return errors.Join(c.tr.Close(), c.udp.Close())
}

// Abort drops the client off the network without a word, as a headset that
// loses power would: the server hears nothing more and must time it out.
// A client on a shared Transport cannot vanish alone; Abort closes it.
func (c *Client) Abort() {
	if c.udp == nil {
		c.Close()
		return
	}
	c.udp.Close()
	c.sess.CloseWithError(0, "") // locally: nothing reaches the server now
	c.wg.Wait()
	c.closeSockets()
}

// LocalAddr returns the client's current UDP address.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

func (c *Client) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// readLoop reads control messages into the view and to request waiters.
// Runs in its own goroutine.
func (c *Client) readLoop() {
	r := bufio.NewReaderSize(c.ctl, 16<<10)
	var buf []byte
	defer func() {
		c.mu.Lock()
		c.view.Closed = true
		c.notifyLocked()
		c.mu.Unlock()
	}()
	for {
		body, err := codec.ReadFrame(r, buf, c.cfg.MaxMessage)
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		buf = body[:0]
		c.traffic.messagesReceived.Add(1)
		c.traffic.bytesReceived.Add(uint64(len(body) + codec.FrameHeaderSize))
		msg, err := codec.DecodeFromServer(body)
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		if goodbye, _ := c.apply(msg); goodbye {
			// The server is done with us: close our side now.
			c.sess.CloseWithError(0, "goodbye")
		}
	}
}

// apply folds one message from the server into the view. It reports a
// goodbye, and whether it knew the message's type (a client of this
// version knows every type the server sends).
func (c *Client) apply(msg codec.Message) (goodbye, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notifyLocked()
	v := &c.view
	var ref uint32
	switch m := msg.(type) {
	case *codec.Welcome:
		ref = m.Ref
	case *codec.Joined:
		ref = m.Ref
		v.Room, v.User, v.Slot, v.Token = m.Room, m.User, m.Slot, m.Token
		if m.TickMillis > 0 {
			c.tickPeriod.Store(int64(time.Duration(m.TickMillis) * time.Millisecond))
		}
		for i := range c.tickArrivals {
			c.tickArrivals[i].Store(0) // another room ticks at its own times
		}
		c.tickArrivalN.Store(0)
		c.ownSlot.Store(int32(m.Slot))
		c.margin.Store(c.tickPeriod.Load() / 10)
		v.Entities, v.Presence, v.Poses = nil, nil, nil
		v.Seq = 0 // pose updates are numbered per member of a room
		clear(c.slots)
		clear(c.avatarSlots) // the room's entities_state comes next
		clear(c.seqs)
	case *codec.EntitiesState:
		// Pose updates newer than the state may have come first: keep them.
		old := v.Poses
		v.Entities = m.Entities
		v.Poses = make(map[string]RemotePose)
		clear(c.slots)
		clear(c.avatarSlots)
		for id, comp := range m.Entities {
			c.trackAvatarLocked(id, comp, m.Seq)
			if p, ok := old[id]; ok && int32(p.Seq-m.Seq) > 0 {
				v.Poses[id] = p
			}
		}
		if int32(m.Seq-v.Seq) > 0 {
			v.Seq = m.Seq
		}
		for s := range c.seqs {
			if int32(s-v.Seq) <= 0 {
				delete(c.seqs, s)
			}
		}
		c.resyncing = false
	case *codec.EntitiesDiff:
		if v.Entities == nil {
			v.Entities = make(map[string]codec.Components)
		}
		for id, comp := range m.Creates {
			v.Entities[id] = comp
			c.trackAvatarLocked(id, comp, v.Seq)
		}
		for id, changed := range m.Updates {
			cur := v.Entities[id]
			if cur == nil {
				cur = make(codec.Components)
				v.Entities[id] = cur
			}
			for k, val := range changed {
				if val == nil {
					delete(cur, k)
				} else {
					cur[k] = val
				}
			}
		}
		for _, id := range m.Deletes {
			c.untrackAvatarLocked(id)
			delete(v.Entities, id)
		}
	case *codec.PresenceState:
		v.Presence = make(map[string][]codec.PresenceMeta, len(m.State))
		for k, e := range m.State {
			v.Presence[k] = e.Metas
		}
	case *codec.PresenceDiff:
		if v.Presence == nil {
			v.Presence = make(map[string][]codec.PresenceMeta)
		}
		for k, e := range m.Joins {
			for _, meta := range e.Metas {
				if !slices.ContainsFunc(v.Presence[k], func(x codec.PresenceMeta) bool { return x.Ref == meta.Ref }) {
					v.Presence[k] = append(v.Presence[k], meta)
				}
			}
		}
		for k, e := range m.Leaves {
			metas := slices.DeleteFunc(slices.Clone(v.Presence[k]), func(x codec.PresenceMeta) bool {
				return slices.ContainsFunc(e.Metas, func(l codec.PresenceMeta) bool { return l.Ref == x.Ref })
			})
			if len(metas) == 0 {
				delete(v.Presence, k)
			} else {
				v.Presence[k] = metas
			}
		}
	case *codec.PresenceCollection:
		ref = m.Ref
		c.applyCollectionLocked(m)
	case *codec.Event:
		v.Events = append(v.Events, *m)
	case *codec.OK:
		ref = m.Ref
	case *codec.Pong:
		ref = m.Ref
	case *codec.Error:
		ref = m.Ref
		v.Errors = append(v.Errors, *m)
	case *codec.Goodbye:
		v.Goodbye = m
		goodbye = true
	default:
		return false, false
	}
	if ref != 0 {
		if ch, ok := c.waiters[ref]; ok {
			ch <- msg
			delete(c.waiters, ref)
		}
	}
	return goodbye, true
}

// applyCollectionLocked folds a presence_collection into its view: a state
// replaces it; joins are added, then leaves removed.
func (c *Client) applyCollectionLocked(m *codec.PresenceCollection) {
	v := &c.view
	v.CollectionMessages++
	if v.Collections == nil {
		v.Collections = make(map[uint32]map[string]rooms.RoomPresence)
	}
	col := v.Collections[m.Sub]
	if m.State != nil || col == nil {
		col = make(map[string]rooms.RoomPresence)
		v.Collections[m.Sub] = col
	}
	for room, users := range m.State {
		col[room] = make(rooms.RoomPresence)
		rooms.ApplyPresence(col[room], users, nil)
	}
	for room, users := range m.Joins {
		if col[room] == nil {
			col[room] = make(rooms.RoomPresence)
		}
		rooms.ApplyPresence(col[room], users, nil)
	}
	for room, users := range m.Leaves {
		if state := col[room]; state != nil {
			rooms.ApplyPresence(state, nil, users)
			if len(state) == 0 {
				delete(col, room)
			}
		}
	}
}

// SubscribePresence asks for the presence of the rooms whose ids match
// m.Match and returns the subscription's number once its state is in the
// view (View.Collections); what changes follows there every interval.
func (c *Client) SubscribePresence(ctx context.Context, m codec.SubscribePresence) (uint32, error) {
	reply, err := c.Request(ctx, &m)
	if err != nil {
		return 0, err
	}
	if _, ok := reply.(*codec.PresenceCollection); !ok {
		return 0, fmt.Errorf("subscribe_presence: answered with %T", reply)
	}
	return m.Ref, nil
}

// UnsubscribePresence ends a presence subscription.
func (c *Client) UnsubscribePresence(ctx context.Context, sub uint32) error {
	_, err := c.Request(ctx, &codec.UnsubscribePresence{Sub: sub})
	if err == nil {
		c.mu.Lock()
		delete(c.view.Collections, sub)
		c.notifyLocked()
		c.mu.Unlock()
	}
	return err
}

// trackAvatarLocked notes an avatar entity's slot and its pose as of seq.
func (c *Client) trackAvatarLocked(id string, comp codec.Components, seq uint32) {
	if comp["avatar"] != true {
		return
	}
	slot, ok := asInt(comp["slot"])
	if !ok {
		return
	}
	c.forgetSlotLocked(id)
	if old, ok := c.slots[uint16(slot)]; ok {
		delete(c.avatarSlots, old) // the slot went to another avatar
	}
	c.slots[uint16(slot)] = id
	c.avatarSlots[id] = uint16(slot)
	if c.view.Poses == nil {
		c.view.Poses = make(map[string]RemotePose)
	}
	var p codec.Pose
	p.Head.Rotation = codec.Identity.Rotation
	if pos, ok := comp["position"].([]any); ok && len(pos) == 3 {
		for i := range 3 {
			p.Head.Position[i], _ = asFloat(pos[i])
		}
	}
	if rot, ok := comp["rotation"].([]any); ok && len(rot) == 4 {
		for i := range 4 {
			p.Head.Rotation[i], _ = asFloat(rot[i])
		}
	}
	if t, ok := asInt(comp["pose_time"]); ok {
		p.Time = uint32(t)
	}
	c.view.Poses[id] = RemotePose{Pose: p, Received: time.Now(), Seq: seq}
}

func (c *Client) untrackAvatarLocked(id string) {
	c.forgetSlotLocked(id)
	delete(c.view.Poses, id)
}

// forgetSlotLocked forgets which slot avatar id had.
func (c *Client) forgetSlotLocked(id string) {
	if s, ok := c.avatarSlots[id]; ok {
		delete(c.avatarSlots, id)
		if c.slots[s] == id {
			delete(c.slots, s)
		}
	}
}

func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case uint64:
		return int64(v), true
	case float64:
		return int64(v), true
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}

// datagramLoop reads pose updates into the view. Runs in its own goroutine.
func (c *Client) datagramLoop() {
	ctx := c.sess.Context()
	for {
		b, err := c.sess.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		c.traffic.datagramsReceived.Add(1)
		c.traffic.bytesReceived.Add(uint64(len(b)))
		if kind, err := codec.DatagramKind(b); err != nil || kind != codec.DatagramPoses {
			continue
		}
		if c.cfg.DropDatagram != nil && c.cfg.DropDatagram() {
			continue
		}
		u, err := codec.ParsePoseUpdate(b)
		if err != nil {
			continue
		}
		if c.cfg.OnPoseUpdate != nil {
			c.cfg.OnPoseUpdate(u, now)
		}
		if u.Part == 0 {
			n := c.tickArrivalN.Add(1)
			c.tickArrivals[n%uint32(len(c.tickArrivals))].Store(now.UnixNano())
		}
		c.judgeOwnPose(u)
		if c.cfg.OnPoses != nil {
			for rest := u.Records; len(rest) > 0; {
				var slot uint16
				var rec []byte
				if slot, rec, rest, err = codec.NextRecord(rest); err != nil {
					break
				}
				c.cfg.OnPoses(slot, rec, now)
			}
		}
		if c.applyPoses(u, now) {
			c.Send(&codec.Resync{})
		}
	}
}

// judgeOwnPose adjusts the pacer's margin from the client's own avatar in a
// pose update: a tick that forwards the newest pose sent before it shows the
// pose arrived in time, one that forwards the pose before that shows the
// newest came late. The margin tracks the lateness the client meets so that
// one pose in lateTarget is late: a late pose adds a fortieth of the tick
// period, a pose in time takes lateTarget-1 times less. It starts at a tenth
// of the period: a late pose costs the others a tick of staleness, a margin
// too wide only a few milliseconds. A tick says nothing
// when it carries neither, when nothing was sent since the last judgement,
// when the newest pose did not move (the server keeps the time of the first
// of a run of unchanged poses), or before the pacer has its phase from a
// full set of arrivals.
func (c *Client) judgeOwnPose(u codec.PoseUpdate) {
	own := c.ownSlot.Load()
	count := c.sentCount.Load()
	if own < 0 || u.Parts == 0 || u.Seq == c.judgedSeq || count == c.judgedCount || !c.sentMoved.Load() ||
		c.tickArrivalN.Load() < uint32(2*len(c.tickArrivals)) {
		return
	}
	for rest := u.Records; len(rest) > 0; {
		slot, rec, r, err := codec.NextRecord(rest)
		if err != nil {
			return
		}
		rest = r
		if int32(slot) != own {
			continue
		}
		c.judgedSeq, c.judgedCount = u.Seq, count
		sent := c.sentPoses.Load()
		period := c.tickPeriod.Load()
		margin := c.margin.Load()
		switch codec.PoseTime(rec) {
		case uint32(sent):
			margin -= period / 40 / (lateTarget - 1)
		case uint32(sent >> 32):
			margin += period / 40
		default:
			return
		}
		c.margin.Store(min(period/2, max(int64(time.Millisecond)/2, margin)))
		return
	}
}

// lateTarget is one in how many poses the pacer lets come too late for
// their tick: each costs the others a tick of staleness.
const lateTarget = 500

// applyPoses folds a pose update into the view, tracks which updates
// arrived whole, and asks for a resync when one that cannot be recovered
// was lost: when the newest update known to exist is more than Repeat
// updates past the newest received whole, an avatar that stopped moving in
// between may never be sent again.
// It reports whether to ask for a resync.
func (c *Client) applyPoses(u codec.PoseUpdate, now time.Time) (resync bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := &c.view
	if v.Poses == nil {
		return false // no room state yet: nothing to apply the update to
	}
	latest := u.Seq // the newest update known to be complete on the server
	if u.Parts == 0 {
		v.Heartbeats++
	} else {
		latest = u.Seq - 1
		v.PoseUpdates++
		for rest := u.Records; len(rest) > 0 && !c.cfg.SkipPoses; {
			slot, rec, r, err := codec.NextRecord(rest)
			if err != nil {
				break
			}
			rest = r
			id, ok := c.slots[slot]
			if !ok {
				continue
			}
			var p codec.Pose
			if codec.ParsePose(rec, &p) != nil {
				continue
			}
			if old, ok := v.Poses[id]; ok && int32(u.Seq-old.Seq) < 0 {
				continue // reordered: keep the newer
			}
			v.Poses[id] = RemotePose{Pose: p, Received: now, Seq: u.Seq}
		}
		ps := c.seqs[u.Seq]
		if ps == nil {
			ps = &partSet{parts: int(u.Parts)}
			c.seqs[u.Seq] = ps
		}
		if ps.got[u.Part/64]&(1<<(u.Part%64)) == 0 {
			ps.got[u.Part/64] |= 1 << (u.Part % 64)
			ps.count++
		}
		if ps.count == ps.parts {
			delete(c.seqs, u.Seq)
			if int32(u.Seq-v.Seq) > 0 {
				v.Seq = u.Seq
			}
			for s := range c.seqs {
				if int32(s-v.Seq) <= 0 {
					delete(c.seqs, s)
				}
			}
		}
	}
	// A resync whose state has not come in a second (the server may have
	// dropped it over a rate limit) may be asked for again.
	if (!c.resyncing || now.Sub(c.resyncAt) > time.Second) && v.Entities != nil && int32(latest-v.Seq) > int32(c.repeat) {
		c.resyncing, c.resyncAt = true, now
		v.Resyncs++
		resync = true
	}
	c.notifyLocked()
	return resync
}

// Err returns why the control stream ended, once it has.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}
