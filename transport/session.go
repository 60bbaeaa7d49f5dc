package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// flushGrace bounds how long a closing session waits for its last messages
// (a goodbye, an error) to be written.
const flushGrace = time.Second

// session is one client's WebTransport session. It implements rooms.Member.
//
// Four goroutines serve it, tied together by run: readLoop reads the control
// stream, datagramLoop reads datagrams, writeLoop writes queued control
// frames, sendLoop sends queued datagrams. Whatever ends first records a
// close reason with fail; run then closes the session and waits for the
// rest.
type session struct {
	srv  *Server
	id   string
	ctx  context.Context // the session's: ends when it does
	wt   *webtransport.Session
	conn *quic.Conn
	// remote is the client's address, as the session began.
	remote net.Addr
	log    *slog.Logger
	dq     *datagramQueue
	fq     *frameQueue
	ctl    *webtransport.Stream // set by run before the loops start

	maxDatagram atomic.Int64
	lastHeard   atomic.Int64 // Unix nanoseconds
	membership  atomic.Pointer[rooms.Membership]
	presence    presenceSubs
	traffic     traffic

	helloBy time.Time // hello must have come by then

	failOnce sync.Once
	failed   chan struct{} // closed by fail
	reason   CloseReason   // set before failed is closed
	detail   string
	flushed  chan struct{} // closed by writeLoop when it stops
	ended    chan struct{} // closed when run returns
}

var _ rooms.Member = (*session)(nil)

func newSession(srv *Server, wt *webtransport.Session, conn *quic.Conn) *session {
	id := "s" + strconv.FormatUint(srv.nextID.Add(1), 36)
	ss := &session{
		srv:     srv,
		id:      id,
		ctx:     wt.Context(),
		wt:      wt,
		conn:    conn,
		remote:  wt.RemoteAddr(),
		log:     srv.log.With("session", id, "remote", wt.RemoteAddr().String()),
		dq:      newDatagramQueue(),
		fq:      newFrameQueue(srv.cfg.MaxBacklog, &srv.backlog),
		failed:  make(chan struct{}),
		flushed: make(chan struct{}),
		ended:   make(chan struct{}),
	}
	ss.helloBy = time.Now().Add(srv.cfg.HelloTimeout)
	ss.maxDatagram.Store(int64(srv.cfg.MaxDatagram))
	ss.heard()
	return ss
}

// SendPoses implements rooms.Member. The update waits whole for sendLoop;
// one that still waited unsent is dropped and counted.
func (ss *session) SendPoses(seq uint32, parts [][][]byte) {
	if ss.dq.push(seq, parts) {
		ss.srv.metrics.dropSuperseded.Inc()
	}
}

// SendFrame implements rooms.Member. A session whose backlog passes
// Config.MaxBacklog, or a quarter of it while the node's passes
// Config.MaxBacklogTotal, is closed as a slow consumer.
func (ss *session) SendFrame(frame []byte) {
	if !ss.fq.push(frame) {
		ss.fail(CloseSlowConsumer, "control stream backlog over the limit, its own or the node's")
	}
}

// Close implements rooms.Member: the room ends the session with a goodbye.
func (ss *session) Close(g *codec.Goodbye) {
	reason := CloseNormal
	switch g.Code {
	case codec.CodeMoved:
		reason = CloseMoved
	case codec.CodeReplaced:
		reason = CloseReplaced
	}
	ss.membership.Store(nil) // the room is done with it
	ss.send(g)
	ss.fail(reason, g.Message)
}

// MaxDatagramSize implements rooms.Member.
func (ss *session) MaxDatagramSize() int { return int(ss.maxDatagram.Load()) }

func (ss *session) heard() time.Time {
	now := time.Now()
	ss.lastHeard.Store(now.UnixNano())
	return now
}

// overLimit counts a dropped message or datagram and, once the client has
// stayed over the limit for Config.RateGrace, ends the session. It reports
// whether it did.
func (ss *session) overLimit(l *rateLimit, now time.Time, what string) bool {
	if l.overFor(now) <= ss.srv.cfg.RateGrace {
		return false
	}
	ss.goodbye(codec.CodeRateLimited, fmt.Sprintf("over the %s limit of %.0f per second for %v", what, l.rate, ss.srv.cfg.RateGrace), CloseRateLimited)
	return true
}

// fail records why the session ends and wakes run. Only the first call counts.
func (ss *session) fail(reason CloseReason, detail string) {
	ss.failOnce.Do(func() {
		ss.reason, ss.detail = reason, detail
		ss.fq.close()
		ss.dq.close()
		close(ss.failed)
	})
}

// goodbye queues a last message and ends the session once it is written.
func (ss *session) goodbye(code, message string, reason CloseReason) {
	ss.send(&codec.Goodbye{Code: code, Message: message})
	ss.fail(reason, message)
}

// run serves the session until it ends. Runs in its own goroutine.
func (ss *session) run() {
	defer close(ss.ended)
	ctx := ss.wt.Context()
	start := time.Now()
	var loops sync.WaitGroup
	loops.Go(ss.datagramLoop)
	loops.Go(ss.sendLoop)

	actx, cancel := context.WithDeadline(ctx, ss.helloBy)
	loops.Go(func() { // a goodbye before the stream (shutdown) ends the wait
		select {
		case <-ss.failed:
			cancel()
		case <-actx.Done():
		}
	})
	ctl, err := ss.wt.AcceptStream(actx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			ss.fail(CloseTimeout, "no control stream")
		} else {
			ss.fail(ss.endReason(), "session ended before its control stream")
		}
		close(ss.flushed)
	} else {
		ss.ctl = ctl
		loops.Go(ss.writeLoop)
		loops.Go(ss.readLoop)
		loops.Go(ss.refuseStreams)
	}

	select {
	case <-ss.failed:
	case <-ctx.Done():
		ss.fail(ss.endReason(), "session ended")
	}
	if ss.reason != CloseSlowConsumer && ctx.Err() == nil {
		// Let the last messages out, and the client close the session
		// once it has read them: closing it ourselves would reset the
		// stream and could lose them.
		grace := time.NewTimer(flushGrace)
		select {
		case <-ss.flushed:
			select {
			case <-ctx.Done():
			case <-grace.C:
			}
		case <-ctx.Done():
		case <-grace.C:
		}
		grace.Stop()
	}
	if ctx.Err() == nil {
		ss.wt.CloseWithError(webtransport.SessionErrorCode(ss.reason), ss.detail)
	}
	if ss.conn != nil {
		// One session per connection: the connection ends with it. Closing
		// it also frees a sendLoop blocked in quic-go's SendDatagram.
		ss.conn.CloseWithError(0, "")
	}
	loops.Wait()
	ss.fq.discard()
	ss.stopPresence()
	if m := ss.membership.Swap(nil); m != nil {
		m.Disconnect(time.Unix(0, ss.lastHeard.Load()))
	}
	ss.srv.metrics.disconnects.WithLabelValues(ss.reason.String()).Inc()
	ss.log.Info("session ended", "reason", ss.reason.String(), "detail", ss.detail, "lasted", time.Since(start).Round(time.Millisecond))
}

// endReason classifies a session that ended under us: by why its context
// ended, or, when it has not yet, by err, the error that told us.
func (ss *session) endReason(err ...error) CloseReason {
	causes := []error{context.Cause(ss.wt.Context())}
	if ss.conn != nil {
		// The session's context may end with no cause of its own when its
		// connection does: the connection's says who closed it.
		causes = append(causes, context.Cause(ss.conn.Context()))
	}
	for _, cause := range append(causes, err...) {
		var idle *quic.IdleTimeoutError
		var sessErr *webtransport.SessionError
		var appErr *quic.ApplicationError
		var strErr *webtransport.StreamError
		var h3Err *http3.Error
		switch {
		case errors.As(cause, &idle):
			return CloseTimeout
		case errors.As(cause, &sessErr) && sessErr.Remote,
			errors.As(cause, &appErr) && appErr.Remote,
			errors.As(cause, &strErr) && strErr.Remote,
			// The client's closing may reach the session first as its
			// CONNECT stream reset with WT_SESSION_GONE.
			errors.As(cause, &h3Err) && h3Err.Remote,
			// A session the client closed may end with no cause of its own;
			// a lost client ends in an idle timeout, which has one.
			cause == context.Canceled:
			return CloseNormal // the client closed it
		}
	}
	return CloseClientGone
}

// readLoop reads control messages until the stream or session ends, or the
// client breaks the protocol. Runs in its own goroutine.
func (ss *session) readLoop() {
	r := bufio.NewReaderSize(ss.ctl, 4096)
	var buf []byte
	rs := newReadState(&ss.srv.cfg)
	ss.ctl.SetReadDeadline(ss.helloBy)
	for {
		body, err := codec.ReadFrame(r, buf, ss.srv.cfg.MaxMessage)
		switch {
		case errors.Is(err, codec.ErrTooLarge):
			ss.srv.metrics.rejMessageTooLarge.Inc()
			ss.goodbye(codec.CodeTooLarge, err.Error(), CloseTooLarge)
			return
		case errors.Is(err, codec.ErrMalformed):
			ss.srv.metrics.rejBadMessage.Inc()
			ss.goodbye(codec.CodeBadMessage, err.Error(), CloseProtocolError)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			ss.goodbye(codec.CodeNoHello, "no hello in time", CloseTimeout)
			return
		case errors.Is(err, io.EOF):
			ss.fail(CloseNormal, "client closed its control stream")
			return
		case err != nil:
			ss.fail(ss.endReason(err), err.Error())
			return
		}
		buf = body[:0]
		hello := rs.hello
		if !ss.process(body, rs) {
			return
		}
		if !hello && rs.hello {
			ss.ctl.SetReadDeadline(time.Time{})
		}
	}
}

// readState is what readLoop keeps between messages.
type readState struct {
	hello      bool
	messages   *rateLimit // every control message
	operations *rateLimit // room operations among them
}

func newReadState(cfg *Config) *readState {
	now := time.Now()
	return &readState{messages: newRateLimit(cfg.MessageRate, now), operations: newRateLimit(cfg.EventRate, now)}
}

// process handles one control message body: hello first, then the rate
// limits, then the message. It reports whether to go on reading; the
// session has failed when it does not.
func (ss *session) process(body []byte, rs *readState) bool {
	select {
	case <-ss.failed:
		return false // closing: no more requests
	default:
	}
	now := ss.heard()
	ss.srv.metrics.messagesIn.Inc()
	ss.traffic.bytesIn.Add(uint64(len(body) + codec.FrameHeaderSize))
	// Every frame after hello counts against the message limit before it
	// is decoded: malformed ones cost the server as much as any.
	if rs.hello && !rs.messages.allow(now) {
		return ss.dropped(rs.messages, now, "control message", 0)
	}
	// One walk checks the message and finds its type; a room operation
	// outside a room is refused before its payload is decoded.
	peeked, err := codec.Peek(body)
	var msg codec.Message
	if err == nil {
		if rs.hello && roomOperation(peeked.Type) {
			if !rs.operations.allow(now) {
				return ss.dropped(rs.operations, now, "room operation", peeked.Ref)
			}
			if needsRoom(peeked.Type) && ss.membership.Load() == nil {
				ss.srv.metrics.rejNotJoined.Inc()
				ss.sendError(peeked.Ref, codec.CodeNotJoined, "join a room first")
				return true
			}
		}
		msg, err = codec.DecodePeeked(body, peeked)
	}
	if err != nil {
		ss.srv.metrics.rejBadMessage.Inc()
		if !rs.hello {
			ss.goodbye(codec.CodeBadMessage, err.Error(), CloseProtocolError)
			return false
		}
		code := codec.CodeBadMessage
		if errors.Is(err, codec.ErrTooLarge) {
			code = codec.CodeTooLarge // too many values, or too deep
		}
		ss.sendError(peeked.Ref, code, err.Error())
		return true
	}
	if !rs.hello {
		h, ok := msg.(*codec.Hello)
		if !ok {
			ss.goodbye(codec.CodeNoHello, "the first message must be hello", CloseProtocolError)
			return false
		}
		if h.Version != codec.Version {
			ss.goodbye(codec.CodeUnsupported, fmt.Sprintf("protocol version %d; this server speaks %d", h.Version, codec.Version), CloseProtocolError)
			return false
		}
		rs.hello = true
		ss.handleHello(h)
		return true
	}
	ss.handle(msg)
	return true
}

// dropped counts a message dropped over a limit, answers it if it is a
// request, and ends the session once it has stayed over the limit. It
// reports whether to go on reading.
func (ss *session) dropped(l *rateLimit, now time.Time, what string, ref uint32) bool {
	ss.srv.metrics.rejMessageRate.Inc()
	if ss.overLimit(l, now, what) {
		return false
	}
	if ref != 0 {
		// A request is answered, so that its sender does not wait.
		ss.sendError(ref, codec.CodeRateLimited, fmt.Sprintf("over the %s limit of %.0f per second", what, l.rate))
	}
	return true
}

// roomOperation reports whether a message of the type changes a room, fans
// out to it, makes it encode its world or watches rooms, and so falls under
// the stricter of the two message limits.
func roomOperation(typ string) bool {
	switch typ {
	case codec.TypeJoin, codec.TypeEvent, codec.TypeCreate, codec.TypeUpdate, codec.TypeDelete, codec.TypeResync, codec.TypeSubscribePresence, codec.TypePresenceUpdate:
		return true
	}
	return false
}

// needsRoom reports whether a message of the type is only for a session in
// a room.
func needsRoom(typ string) bool {
	switch typ {
	case codec.TypeEvent, codec.TypeCreate, codec.TypeUpdate, codec.TypeDelete, codec.TypeResync, codec.TypePresenceUpdate:
		return true
	}
	return false
}

// refuseStreams resets every stream a client opens after its control
// stream, so that nothing it writes there is buffered. Runs in its own
// goroutine.
// A client that opens more than maxExtraStreams of them is closed: the
// protocol needs none, and each costs the server work to refuse.
func (ss *session) refuseStreams() {
	ctx := ss.wt.Context()
	var opened atomic.Int64
	tooMany := func() bool {
		if n := opened.Add(1); n > maxExtraStreams {
			ss.srv.metrics.rejBadMessage.Inc()
			ss.goodbye(codec.CodeBadMessage, fmt.Sprintf("%d streams opened besides the control stream; the protocol uses none", n), CloseProtocolError)
			return true
		}
		return false
	}
	var uni sync.WaitGroup
	uni.Go(func() {
		for {
			str, err := ss.wt.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			str.CancelRead(0)
			if tooMany() {
				return
			}
		}
	})
	for {
		str, err := ss.wt.AcceptStream(ctx)
		if err != nil {
			break
		}
		str.CancelRead(0)
		str.CancelWrite(0)
		if tooMany() {
			break
		}
	}
	uni.Wait()
}

// maxExtraStreams is how many streams besides its control stream a session
// may open (and have reset) before it is closed.
const maxExtraStreams = 16

func (ss *session) handleHello(h *codec.Hello) {
	cfg := ss.srv.Config()
	ss.send(&codec.Welcome{
		Header:      codec.Header{Ref: h.Ref},
		Version:     codec.Version,
		Session:     ss.id,
		ServerTime:  time.Now().UnixMilli(),
		TickMillis:  cfg.Registry.Config().Tick.Milliseconds(),
		MaxDatagram: ss.MaxDatagramSize(),
		MaxMessage:  cfg.MaxMessage,
		Repeat:      cfg.Registry.Config().RepeatTicks,
	})
	ss.log.Debug("hello", "client", h.Client)
}

// handle dispatches one control message after hello.
func (ss *session) handle(msg codec.Message) {
	switch m := msg.(type) {
	case *codec.Join:
		ss.handleJoin(m)
	case *codec.Leave:
		ss.handleLeave(m)
	case *codec.Event:
		ss.handleEvent(m)
	case *codec.PresenceUpdate:
		ss.handlePresenceUpdate(m)
	case *codec.Create:
		ss.handleCreate(m)
	case *codec.Update:
		ss.handleUpdate(m)
	case *codec.Delete:
		ss.handleDelete(m)
	case *codec.Resync:
		ss.handleResync(m)
	case *codec.SubscribePresence:
		ss.handleSubscribePresence(m)
	case *codec.UnsubscribePresence:
		ss.handleUnsubscribePresence(m)
	case *codec.Ping:
		ss.send(&codec.Pong{Header: codec.Header{Ref: m.Ref}, Time: m.Time, ServerTime: time.Now().UnixMilli()})
	case *codec.Hello:
		ss.refuse(m.Ref, codec.CodeBadMessage, "hello was already said")
	default:
		ss.refuse(codec.RefOf(msg), codec.CodeBadMessage, fmt.Sprintf("%s is not a message a client sends", codec.TypeOf(msg)))
	}
}

func (ss *session) handleJoin(m *codec.Join) {
	if ss.membership.Load() != nil {
		ss.refuse(m.Ref, codec.CodeAlreadyJoined, "leave the room first")
		return
	}
	req := rooms.JoinRequest{Ref: m.Ref, Name: m.Name, Device: m.Device, Meta: m.Meta}
	now := time.Now()
	claims, err := VerifyToken(ss.srv.joinSecret, m.Token, now)
	if err == nil && claims.Room != m.Room {
		err = ErrTokenRoom
	}
	switch {
	case err == nil:
		req.User = claims.User // never the client's say-so
		if claims.Name != "" {
			req.Name = claims.Name
		}
	case !ss.srv.devMode():
		ss.srv.metrics.rejUnauthorized.Inc()
		ss.sendError(m.Ref, codec.CodeUnauthorized, err.Error())
		return
	default:
		// Development mode, and no token of this server (none, or one from
		// before a restart): a new user.
		if m.Token != "" {
			ss.log.Debug("join token not taken: a new user instead", "room", m.Room, "err", err)
		}
		req.User = newUserID()
	}
	if ss.srv.devMode() && rooms.ValidID(m.Room) {
		req.Token, err = SignToken(ss.srv.joinSecret, Claims{Room: m.Room, User: req.User, Expires: now.Add(devTokenTTL).Unix()})
		if err != nil {
			ss.log.Error("development token", "err", err)
		}
	}
	if ss.srv.cfg.Registry.Room(m.Room) == nil && !ss.srv.mayStartRoom(ss.remote) {
		ss.refuse(m.Ref, codec.CodeRateLimited, fmt.Sprintf("too many new rooms from this address: %.0f a second", ss.srv.cfg.NewRoomRate))
		return
	}
	// The room sends joined before Join returns. Hold the session's frames
	// until it knows its membership, so that a pose the client sends as soon
	// as it reads joined finds it.
	ss.fq.hold()
	defer ss.fq.release()
	ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
	defer cancel()
	mem, err := ss.srv.cfg.Registry.Join(ctx, m.Room, ss, req)
	var elsewhere *rooms.ElsewhereError
	switch {
	case errors.As(err, &elsewhere):
		ss.srv.metrics.rejMoved.Inc()
		ss.send(&codec.Error{Header: codec.Header{Ref: m.Ref}, Code: codec.CodeMoved, Message: err.Error(), Moved: &elsewhere.Owner})
		return
	case err != nil:
		ss.refuseErr(m.Ref, err)
		return
	}
	if hook := ss.srv.testHookJoined.Load(); hook != nil {
		(*hook)()
	}
	ss.membership.Store(mem)
	ss.log.Info("joined", "room", mem.Room(), "user", mem.User(), "slot", mem.Slot())
}

func (ss *session) handleLeave(m *codec.Leave) {
	mem := ss.membership.Swap(nil)
	if mem == nil {
		ss.refuse(m.Ref, codec.CodeNotJoined, "not in a room")
		return
	}
	mem.Leave()
	ss.send(&codec.OK{Header: codec.Header{Ref: m.Ref}})
}

func (ss *session) handleEvent(m *codec.Event) {
	if mem := ss.joined(m.Ref); mem != nil {
		ss.reply(m.Ref, "", mem.Publish(m.Name, m.Data))
	}
}

// handlePresenceUpdate replaces the meta of the device's presence; the room
// sees it at its next tick.
func (ss *session) handlePresenceUpdate(m *codec.PresenceUpdate) {
	if mem := ss.joined(m.Ref); mem != nil {
		ss.reply(m.Ref, "", mem.UpdateMeta(m.Meta))
	}
}

// Entity changes are answered ok once they are in the store: an ok is a
// promise that the change outlives the server. A refusal comes at once.

func (ss *session) handleCreate(m *codec.Create) {
	if mem := ss.joined(m.Ref); mem != nil {
		// The id is known once CreateEntity returns; the store may be
		// faster than that.
		ids := make(chan string, 1)
		id, err := mem.CreateEntity(m.Components, func(err error) { ss.reply(m.Ref, <-ids, err) })
		if err != nil {
			ss.refuseErr(m.Ref, err)
			return
		}
		ids <- id
	}
}

func (ss *session) handleUpdate(m *codec.Update) {
	if mem := ss.joined(m.Ref); mem != nil {
		if err := mem.UpdateEntity(m.Entity, m.Components, func(err error) { ss.reply(m.Ref, "", err) }); err != nil {
			ss.refuseErr(m.Ref, err)
		}
	}
}

func (ss *session) handleDelete(m *codec.Delete) {
	if mem := ss.joined(m.Ref); mem != nil {
		if err := mem.DeleteEntity(m.Entity, func(err error) { ss.reply(m.Ref, "", err) }); err != nil {
			ss.refuseErr(m.Ref, err)
		}
	}
}

func (ss *session) handleResync(m *codec.Resync) {
	if mem := ss.joined(m.Ref); mem != nil {
		if err := mem.Resync(); err != nil {
			ss.refuseErr(m.Ref, err)
		}
	}
}

// joined returns the session's membership, or answers not_joined.
func (ss *session) joined(ref uint32) *rooms.Membership {
	mem := ss.membership.Load()
	if mem == nil {
		ss.srv.metrics.rejNotJoined.Inc()
		ss.sendError(ref, codec.CodeNotJoined, "join a room first")
	}
	return mem
}

// reply answers a request: ok (when it has a ref) or the error.
func (ss *session) reply(ref uint32, entity string, err error) {
	switch {
	case err != nil:
		ss.refuseErr(ref, err)
	case ref != 0:
		ss.send(&codec.OK{Header: codec.Header{Ref: ref}, Entity: entity})
	}
}

func (ss *session) refuseErr(ref uint32, err error) {
	ss.refuse(ref, errorCode(err), err.Error())
}

func (ss *session) refuse(ref uint32, code, message string) {
	ss.srv.metrics.rejRequestFail.Inc()
	ss.sendError(ref, code, message)
}

func (ss *session) sendError(ref uint32, code, message string) {
	ss.send(&codec.Error{Header: codec.Header{Ref: ref}, Code: code, Message: message})
}

// send encodes one message for this session alone.
func (ss *session) send(m codec.Message) {
	frame, err := codec.EncodeFrame(m)
	if err != nil {
		ss.log.Error("encode", "err", err)
		return
	}
	ss.SendFrame(frame)
}

// writeLoop writes queued control frames to the stream, taking all that
// is queued at once (writeFrames). When the session fails it writes what is left
// and stops. Runs in its own goroutine.
func (ss *session) writeLoop() {
	defer close(ss.flushed)
	ctx := ss.wt.Context()
	var frames [][]byte
	var out []byte
	for {
		stopping := false
		select {
		case <-ss.fq.ready:
		case <-ss.failed:
			stopping = true
			ss.ctl.SetWriteDeadline(time.Now().Add(flushGrace))
		case <-ctx.Done():
			return
		}
		frames = ss.fq.takeAll(frames[:0])
		if len(frames) > 0 {
			if err := ss.writeFrames(frames, &out); err != nil {
				ss.fail(ss.endReason(), "write: "+err.Error())
				return
			}
			ss.srv.metrics.messagesOut.Add(float64(len(frames)))
			clear(frames)
		}
		if stopping {
			ss.ctl.Close() // FIN after the last message
			return
		}
	}
}

// writeBatch is how many bytes of small frames writeLoop gathers into one
// write, so that a tick's messages leave in as few packets as they fill; a
// frame as big is written as it is, without a copy.
const writeBatch = 16 << 10

// writeFrames writes frames to the control stream, small ones gathered in
// out. The frames' bytes are released from the frame queue, written or
// not: after an error the session ends.
func (ss *session) writeFrames(frames [][]byte, out *[]byte) error {
	taken := 0
	for _, f := range frames {
		taken += len(f)
	}
	defer ss.fq.written(taken)
	write := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		if _, err := ss.ctl.Write(b); err != nil {
			return err
		}
		ss.traffic.bytesOut.Add(uint64(len(b)))
		return nil
	}
	for _, f := range frames {
		if len(*out) > 0 && len(*out)+len(f) > writeBatch {
			if err := write(*out); err != nil {
				return err
			}
			*out = (*out)[:0]
		}
		if len(f) >= writeBatch {
			if err := write(f); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, f...)
	}
	err := write(*out)
	*out = (*out)[:0]
	return err
}

// datagramLoop reads datagrams: poses go to the pose table, pings are
// echoed, anything else is counted and dropped. Runs in its own goroutine.
func (ss *session) datagramLoop() {
	ctx := ss.wt.Context()
	m := ss.srv.metrics
	limit := newRateLimit(ss.srv.cfg.PoseRate, time.Now())
	for {
		b, err := ss.wt.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		now := ss.heard()
		ss.traffic.datagramsIn.Add(1)
		ss.traffic.bytesIn.Add(uint64(len(b)))
		if !limit.allow(now) {
			m.rejPoseRate.Inc()
			if ss.overLimit(limit, now, "datagram") {
				return
			}
			continue
		}
		kind, err := codec.DatagramKind(b)
		switch {
		case err != nil:
			m.rejBadDatagram.Inc()
		case kind == codec.DatagramPose:
			rec, err := codec.ParsePoseDatagram(b)
			if err != nil {
				m.rejBadDatagram.Inc()
				continue
			}
			mem := ss.membership.Load()
			if mem == nil {
				m.rejNotJoined.Inc()
				continue
			}
			if _, err := mem.UpdatePose(rec); err != nil {
				m.rejNotDriver.Inc()
				continue
			}
			ss.traffic.posesIn.Add(1)
		case kind == codec.DatagramPing:
			if codec.CheckPingDatagram(b) != nil {
				m.rejBadDatagram.Inc()
				continue
			}
			if ss.dq.pushPing(b) {
				m.dropPingQueueFull.Inc()
			}
		default:
			m.rejBadDatagram.Inc()
		}
	}
}

// datagramRefused handles a datagram quic-go would not send, and reports
// whether the session goes on. Apart from sendLoop, so that its error's
// target does not cost the loop an allocation per datagram sent.
func (ss *session) datagramRefused(err error) bool {
	var tooLarge *quic.DatagramTooLargeError
	if errors.As(err, &tooLarge) {
		// The path allows less than we thought; the room sizes the next
		// tick's datagrams to the new limit. The quarter stream id in front
		// of the payload takes up to 8 bytes.
		ss.maxDatagram.Store(max(codec.MinDatagramSize, min(ss.maxDatagram.Load(), tooLarge.MaxDatagramPayloadSize-8)))
		ss.srv.metrics.dropTooLarge.Inc()
		return true
	}
	ss.fail(ss.endReason(err), "send datagram: "+err.Error())
	return false
}

// sendLoop sends queued datagrams, an update's in a row, each assembled in
// one scratch buffer: quic-go copies what it is given. quic-go's
// SendDatagram blocks while its own queue is full, and drops nothing for
// it; that stalls only this loop, mid-update if need be, while newer
// updates replace the one that waits. Runs in its own goroutine.
func (ss *session) sendLoop() {
	ctx := ss.wt.Context()
	m := ss.srv.metrics
	var buf []byte
	for {
		select {
		case <-ss.dq.ready:
		case <-ss.failed:
			return
		case <-ctx.Done():
			return
		}
		for d, ok := ss.dq.pop(); ok; d, ok = ss.dq.pop() {
			buf = d.appendTo(buf[:0])
			if len(buf) > ss.MaxDatagramSize() {
				m.dropTooLarge.Inc()
				continue
			}
			if err := ss.wt.SendDatagram(buf); err != nil {
				if !ss.datagramRefused(err) {
					return
				}
				continue
			}
			ss.traffic.datagramsOut.Add(1)
			ss.traffic.bytesOut.Add(uint64(len(buf)))
			if hook := ss.srv.testHookSent.Load(); hook != nil {
				(*hook)(ss, &d)
			}
		}
	}
}
