package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/transport"
	"github.com/posecast/posecast/transport/client"
)

// clientsPerSocket is how many sessions share one UDP socket. quic-go
// demultiplexes connections on a socket by connection id; a few sockets
// spread the receive work over goroutines.
const clientsPerSocket = 250

// config is what a run is asked to do.
type config struct {
	server       string // the server's HTTP address, http://host:port
	rooms        int
	perRoom      int
	schedule     client.Schedule // Hz zero: in step with the tick
	duration     time.Duration
	ramp         time.Duration
	roomPrefix   string
	hands        bool
	joinTimeout  time.Duration
	serverPID    int
	maxErrorRate float64
	cpuProfile   string
	authSecret   string  // signs each bot's join token when set
	walk         float64 // side of the square the bots walk in, metres; 0: each circles where it was placed
	slow         int     // how many bots read at slowRate
	slowRate     byteRate
}

func (c *config) clients() int { return c.rooms * c.perRoom }

// scheduleName is the schedule's name in the report: "tick" or "free".
func (c *config) scheduleName() string {
	if c.schedule.Hz > 0 {
		return "free"
	}
	return "tick"
}

// room is one room of the run: its name and, as they join, its bots.
type room struct {
	name string
	// at is where the room was last found (a *codec.Location), so that
	// bots go there without asking; nil until one bot has joined.
	at atomic.Pointer[codec.Location]

	// interest is the room's interest management as joined said; nil:
	// every member gets every avatar at every tick.
	interest atomic.Pointer[codec.Interest]
	// center is where the room placed its first bot: the middle of the
	// walk.
	center atomic.Pointer[[3]float64]
	// floor is where the room's bots stood lately, for its interest.
	floor atomic.Pointer[floorMap]

	mu      sync.Mutex // guards members
	members []*botClient
}

// centre returns the middle of the room's walk: where its first bot was
// placed, which is at for the first to ask.
func (r *room) centre(at [3]float64) [3]float64 {
	r.center.CompareAndSwap(nil, &at)
	return *r.center.Load()
}

// where returns where the room was last found, or nil.
func (r *room) where() *codec.Location { return r.at.Load() }

func (r *room) add(b *botClient) {
	r.mu.Lock()
	r.members = append(r.members, b)
	r.mu.Unlock()
}

func (r *room) snapshot() []*botClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members
}

// botClient is one simulated headset.
type botClient struct {
	id      int
	room    *room
	run     *loadTest
	client  *client.Client
	ownSlot atomic.Int32 // its avatar's slot, -1 before it joins
	// before is the traffic of the sessions it had before a move.
	before   client.Traffic
	joinedAt time.Time
	// newest holds, by slot, the sender timestamp of the newest pose this
	// bot received for that avatar (0 for none yet).
	newest []atomic.Uint32
	// slow is the socket of a bot that reads at a limited rate; nil for
	// one that reads at full speed.
	slow *slowConn
	// at is where the bot stands on the floor, from the pose it sent last:
	// x and z as float32 bits, once placed.
	at      atomic.Uint64
	placed  atomic.Bool
	updates updateLog
	leftAt  time.Time // when its last session ended
}

// loadTest is one run in progress.
type loadTest struct {
	cfg     config
	tickMS  atomic.Int64
	ownCPU  float64 // posebot's CPU seconds when the run began
	stats   counters
	latency histogram
	stale   histogram
	joins   histogram
	started time.Time
	rooms   []*room
	// near and far are what the bots that read at full speed saw of the
	// avatars near them and far from them; slowStale and otherStale the
	// staleness that the slow bots and the others saw.
	near, far             pairHistograms
	slowStale, otherStale histogram

	mu      sync.Mutex // guards clients
	clients []*botClient
}

// onPoses records one pose update a bot received and, for a pose newer
// than the newest the bot holds for that avatar, its latency, and holds it.
// A record that repeats a pose already held (the server sends a pose again
// on the ticks after it, for receivers that lost one) is no new receipt. It
// runs in the client's datagram goroutine for every record and must stay
// cheap.
func (b *botClient) onPoses(slot uint16, rec []byte, received time.Time) {
	if int32(slot) == b.ownSlot.Load() || int(slot) >= len(b.newest) {
		return // its own avatar echoed back, or a slot past the run's rooms
	}
	sent := codec.PoseTime(rec)
	b.run.stats.updatesReceived.Add(1)
	for {
		cur := b.newest[slot].Load()
		if cur != 0 && int32(sent-cur) <= 0 {
			return
		}
		if b.newest[slot].CompareAndSwap(cur, sent) {
			ms := int64(int32(uint32(received.UnixMilli()) - sent))
			b.run.latency.record(ms)
			if b.slow == nil {
				b.run.pairs(b.room.floor.Load(), int(b.ownSlot.Load()), int(slot)).latency.record(ms)
			}
			return
		}
	}
}

// start runs one bot from ramp-up to the end of the run: it dials, joins
// and sends poses until ctx ends. Runs in its own goroutine.
func (r *loadTest) startBot(ctx context.Context, id int, rm *room, tr *quic.Transport, slow *slowConn, at time.Time) {
	select {
	case <-time.After(time.Until(at)):
	case <-ctx.Done():
		return
	}
	b := &botClient{id: id, room: rm, run: r, newest: make([]atomic.Uint32, r.cfg.perRoom*2+64), slow: slow}
	b.ownSlot.Store(-1)
	began := time.Now()
	jctx, cancel := context.WithTimeout(ctx, r.cfg.joinTimeout)
	defer cancel()
	join := codec.Join{Room: rm.name, Name: fmt.Sprintf("bot %d", id)}
	if r.cfg.authSecret != "" {
		// Valid for the whole run and then some; the server checks it at join.
		var err error
		join.Token, err = transport.SignToken([]byte(r.cfg.authSecret), transport.Claims{
			Room: join.Room, User: fmt.Sprintf("bot-%d", id), Name: join.Name, Expires: time.Now().Add(r.cfg.duration + time.Hour).Unix(),
		})
		if err != nil {
			r.stats.fail(errJoin)
			return
		}
	}
	c, joined, err := b.connect(jctx, tr, join, rm.where())
	if err != nil {
		if ctx.Err() == nil {
			r.stats.fail(err.Error())
		}
		return
	}
	cancel()
	b.client = c
	defer func() {
		b.client.Close()
		b.updates.end()
		b.leftAt = time.Now()
	}()
	b.joinedAt = time.Now()
	b.ownSlot.Store(int32(joined.Slot))
	rm.interest.Store(joined.Interest)
	if slow != nil {
		slow.throttle()
	}
	r.tickMS.Store(joined.TickMillis)
	r.joins.record(time.Since(began).Milliseconds())
	r.stats.joined.Add(1)
	rm.add(b)
	r.mu.Lock()
	r.clients = append(r.clients, b)
	r.mu.Unlock()

	m := newMotion(joined.Position, uint64(id)+1, r.cfg.hands, r.started)
	if r.cfg.walk > 0 {
		m.walk = newWalk(rm.centre(joined.Position), r.cfg.walk, uint64(id)+1)
	}
	pacer := c.Pacer(r.cfg.schedule)
	due := time.Now()
	if r.cfg.schedule.Hz > 0 {
		// Free-running bots start at a random point of their period, as
		// real headsets do; in step with the tick, the tick sets it.
		due = due.Add(time.Duration(rand.Int64N(int64(time.Second / time.Duration(r.cfg.schedule.Hz)))))
	}
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.finish(b)
			return
		case <-b.client.Done():
			if !b.follow(ctx, tr, join) {
				r.stats.fail(errStream)
				r.finish(b)
				return
			}
			pacer = b.client.Pacer(r.cfg.schedule)
		case now := <-timer.C:
			p := m.pose(now)
			b.stand(p.Head.Position)
			if err := b.client.SendPose(&p); err != nil {
				select {
				case <-b.client.Done():
					// The session ended meanwhile: the next round follows
					// a move or counts the end.
				default:
					r.stats.fail(errSend)
				}
			} else {
				r.stats.posesSent.Add(1)
			}
			now = time.Now()
			timer.Reset(pacer.Next(now).Sub(now))
		}
	}
}

// connect opens a session where the room lives, starting at where (nil:
// ask the server) and following moved answers, and joins. Its error is the
// kind of failure, to count.
func (b *botClient) connect(ctx context.Context, tr *quic.Transport, join codec.Join, where *codec.Location) (*client.Client, *codec.Joined, error) {
	c, joined, err := client.Connect(ctx, client.ConnectConfig{
		HTTP:     b.run.cfg.server,
		Location: where,
		Client: client.Config{
			Name:      "posebot",
			Transport: tr,
			OnPoses:   b.onPoses,
			OnPoseUpdate: func(u codec.PoseUpdate, _ time.Time) {
				b.updates.add(u)
			},
			SkipPoses: true,
		},
		Join: join,
	})
	var rerr *client.RequestError
	switch {
	case err == nil:
		loc := c.Location()
		b.room.at.Store(&loc)
		return c, joined, nil
	case errors.As(err, &rerr):
		return nil, nil, errors.New(classify(ctx, errJoin))
	case refused(err):
		return nil, nil, errors.New(errRefused)
	}
	return nil, nil, errors.New(classify(ctx, errDial))
}

// follow takes a bot whose session ended with a goodbye moved to where its
// room went, and reports whether it is back in.
func (b *botClient) follow(ctx context.Context, tr *quic.Transport, join codec.Join) bool {
	r := b.run
	g := b.client.View().Goodbye
	if g == nil || g.Code != codec.CodeMoved || ctx.Err() != nil {
		return false
	}
	r.finish(b)
	b.client.Close()
	b.updates.end()
	t := b.client.Traffic()
	b.before.DatagramsSent += t.DatagramsSent
	b.before.DatagramsReceived += t.DatagramsReceived
	b.before.BytesSent += t.BytesSent
	b.before.BytesReceived += t.BytesReceived
	jctx, cancel := context.WithTimeout(ctx, r.cfg.joinTimeout)
	defer cancel()
	c, joined, err := b.connect(jctx, tr, join, g.Moved)
	if err != nil {
		return false
	}
	r.stats.moved.Add(1)
	b.client = c
	b.ownSlot.Store(int32(joined.Slot))
	b.room.interest.Store(joined.Interest)
	return true
}

// traffic returns what the bot's sessions sent and received. Call it once
// the bot has stopped.
func (b *botClient) traffic() client.Traffic {
	t := b.client.Traffic()
	t.DatagramsSent += b.before.DatagramsSent
	t.DatagramsReceived += b.before.DatagramsReceived
	t.BytesSent += b.before.BytesSent
	t.BytesReceived += b.before.BytesReceived
	return t
}

// finish counts what a bot's view says went wrong.
func (r *loadTest) finish(b *botClient) {
	v := b.client.View()
	for range v.Errors {
		r.stats.fail(errProtocol)
	}
	r.stats.resyncs.Add(uint64(v.Resyncs))
}

// refused reports whether a dial failed because the server refused the
// connection, as it does before the handshake past its bound on sessions
// from one address.
func refused(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused
}

// classify names a failed step: a timeout, or the step's own kind.
func classify(ctx context.Context, kind string) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errTimeout
	}
	return kind
}

// sampleStaleness records, for every bot and every other bot in its room,
// the age of the newest pose it holds for that bot. A pair with no pose yet
// counts from when the later of the two joined. A sample goes to all pairs,
// to the slow bots' or the others', and for the others to near or far
// pairs by where the two stood at the room's last floor map.
func (r *loadTest) sampleStaleness(now time.Time) {
	var all, slow, other, near, far tally
	nowMS := uint32(now.UnixMilli())
	for _, rm := range r.rooms {
		members := rm.snapshot()
		fm := rm.floor.Load()
		for _, rx := range members {
			rxSlot := int(rx.ownSlot.Load())
			for _, tx := range members {
				slot := int(tx.ownSlot.Load())
				if tx == rx || slot < 0 || slot >= len(rx.newest) {
					continue
				}
				var ms int64
				if t := rx.newest[slot].Load(); t != 0 {
					ms = int64(int32(nowMS - t))
				} else {
					since := rx.joinedAt
					if tx.joinedAt.After(since) {
						since = tx.joinedAt
					}
					ms = now.Sub(since).Milliseconds()
				}
				all.record(ms)
				switch {
				case rx.slow != nil:
					slow.record(ms)
				case fm.near(rxSlot, slot):
					other.record(ms)
					near.record(ms)
				default:
					other.record(ms)
					far.record(ms)
				}
			}
		}
	}
	r.stale.add(&all)
	r.slowStale.add(&slow)
	r.otherStale.add(&other)
	r.near.stale.add(&near)
	r.far.stale.add(&far)
}

// pairs returns the histograms of the pair of the receiver in slot rx and
// the avatar in slot tx: near or far.
func (r *loadTest) pairs(fm *floorMap, rx, tx int) *pairHistograms {
	if fm.near(rx, tx) {
		return &r.near
	}
	return &r.far
}

// mapFloors maps where the bots of each room with interest management
// stand now.
func (r *loadTest) mapFloors() {
	for _, rm := range r.rooms {
		in := rm.interest.Load()
		if in == nil {
			rm.floor.Store(nil)
			continue
		}
		var at []floorPoint
		for _, b := range rm.snapshot() {
			slot, p := int(b.ownSlot.Load()), b.standing()
			if slot < 0 || !p.ok {
				continue
			}
			if slot >= len(at) {
				at = append(at, make([]floorPoint, slot+1-len(at))...)
			}
			at[slot] = p
		}
		rm.floor.Store(newFloorMap(in, at))
	}
}

// stand notes where the bot stands, from the head of the pose it sends.
func (b *botClient) stand(head [3]float64) {
	b.at.Store(uint64(math.Float32bits(float32(head[0])))<<32 | uint64(math.Float32bits(float32(head[2]))))
	b.placed.Store(true)
}

// standing returns where the bot stands on the floor; not ok before its
// first pose.
func (b *botClient) standing() floorPoint {
	if !b.placed.Load() {
		return floorPoint{}
	}
	v := b.at.Load()
	return floorPoint{x: float64(math.Float32frombits(uint32(v >> 32))), z: float64(math.Float32frombits(uint32(v))), ok: true}
}

// sockets opens the shared UDP sockets for n clients.
func sockets(n int) ([]*quic.Transport, func(), error) {
	return transports(max(1, (n+clientsPerSocket-1)/clientsPerSocket), func() (net.PacketConn, error) {
		udp, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		// Thousands of sessions on a socket: give it room to breathe.
		udp.SetReadBuffer(8 << 20)
		udp.SetWriteBuffer(8 << 20)
		return udp, nil
	})
}

// transports opens n sockets with open, each with a quic.Transport over it,
// and returns a function that closes them.
func transports(n int, open func() (net.PacketConn, error)) ([]*quic.Transport, func(), error) {
	var trs []*quic.Transport
	var conns []net.PacketConn
	closeAll := func() {
		for _, t := range trs {
			t.Close()
		}
		for _, c := range conns {
			c.Close()
		}
	}
	for range n {
		c, err := open()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
		trs = append(trs, &quic.Transport{Conn: c})
	}
	return trs, closeAll, nil
}
