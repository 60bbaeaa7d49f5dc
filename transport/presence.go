package transport

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// Bounds of presence subscriptions.
const (
	minPresenceInterval = 100 * time.Millisecond
	maxPresenceInterval = time.Minute
	// maxSubscriptions bounds the presence subscriptions of one session.
	maxSubscriptions = 4
	// sseKeepAlive is how often a quiet presence stream sends a comment, so
	// that proxies keep it open.
	sseKeepAlive = 15 * time.Second
)

// ErrTokenWatch reports a presence token for another pattern.
var ErrTokenWatch = errors.New("presence token is for another pattern")

// presenceSubs are a session's presence subscriptions: each runs in a
// goroutine of its own, sending the session a presence_collection every
// interval in which something changed.
type presenceSubs struct {
	wg sync.WaitGroup // the subscriptions' goroutines

	mu   sync.Mutex // guards the following
	stop map[uint32]chan struct{}
}

// handleSubscribePresence starts a presence subscription: the collection's
// state at once, answering the ref, then what changed every interval.
func (ss *session) handleSubscribePresence(m *codec.SubscribePresence) {
	if m.Ref == 0 {
		ss.refuse(0, codec.CodeInvalid, "subscribe_presence needs a ref, which names the subscription")
		return
	}
	if !ss.srv.devMode() {
		claims, err := VerifyToken(ss.srv.joinSecret, m.Token, time.Now())
		if err == nil && (claims.Watch == "" || claims.Watch != m.Match) {
			// A join token (no pattern) watches nothing, not even "".
			err = ErrTokenWatch
		}
		if err != nil {
			ss.srv.metrics.rejUnauthorized.Inc()
			ss.sendError(m.Ref, codec.CodeUnauthorized, err.Error())
			return
		}
	}
	match, err := rooms.CompileMatch(m.Match)
	if err != nil {
		ss.refuseErr(m.Ref, err)
		return
	}
	interval := ss.srv.cfg.PresenceInterval
	if m.IntervalMillis != 0 {
		interval = time.Duration(m.IntervalMillis) * time.Millisecond
		if interval < minPresenceInterval || interval > maxPresenceInterval {
			ss.refuse(m.Ref, codec.CodeInvalid, fmt.Sprintf("interval_ms must be %d to %d", minPresenceInterval.Milliseconds(), maxPresenceInterval.Milliseconds()))
			return
		}
	}
	p := &ss.presence
	p.mu.Lock()
	switch {
	case p.stop[m.Ref] != nil:
		p.mu.Unlock()
		ss.refuse(m.Ref, codec.CodeInvalid, fmt.Sprintf("a subscription with ref %d exists", m.Ref))
		return
	case len(p.stop) >= maxSubscriptions:
		p.mu.Unlock()
		ss.refuse(m.Ref, codec.CodeInvalid, fmt.Sprintf("at most %d presence subscriptions per session", maxSubscriptions))
		return
	}
	if p.stop == nil {
		p.stop = make(map[uint32]chan struct{})
	}
	stop := make(chan struct{})
	p.stop[m.Ref] = stop
	p.mu.Unlock()
	sub := ss.srv.presence.Subscribe(match)
	p.wg.Go(func() { ss.presenceLoop(sub, m.Ref, interval, stop) })
}

// presenceLoop sends one subscription's collection until it is stopped or
// the session fails. Runs in its own goroutine, owned by the session.
func (ss *session) presenceLoop(sub *rooms.Subscription, ref uint32, interval time.Duration, stop <-chan struct{}) {
	defer sub.Close()
	first := sub.Take()
	first.Ref, first.Sub = ref, ref
	ss.send(first)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ss.failed:
			return
		case <-ss.ctx.Done():
			return
		case <-t.C:
			if msg := sub.Take(); msg != nil {
				msg.Sub = ref
				ss.send(msg)
			}
		}
	}
}

func (ss *session) handleUnsubscribePresence(m *codec.UnsubscribePresence) {
	p := &ss.presence
	p.mu.Lock()
	stop := p.stop[m.Sub]
	delete(p.stop, m.Sub)
	p.mu.Unlock()
	if stop == nil {
		ss.refuse(m.Ref, codec.CodeNotFound, fmt.Sprintf("no presence subscription %d", m.Sub))
		return
	}
	close(stop)
	ss.reply(m.Ref, "", nil)
}

// presenceAPI serves presence across rooms over HTTP.
type presenceAPI struct {
	*api
	presence *rooms.Collector
	interval time.Duration
}

// match reads the match parameter, answering the request itself when it is
// not a valid pattern.
func (a *presenceAPI) match(w http.ResponseWriter, r *http.Request) *regexp.Regexp {
	re, err := rooms.CompileMatch(r.URL.Query().Get("match"))
	if err != nil {
		a.fail(w, http.StatusBadRequest, err.Error())
		return nil
	}
	return re
}

// handlePresence answers GET /api/presence?match=RE: the presence now of the
// rooms whose ids match, {room: {user: {metas: [...]}}}.
func (a *presenceAPI) handlePresence(w http.ResponseWriter, r *http.Request) {
	if re := a.match(w, r); re != nil {
		writeJSON(w, http.StatusOK, a.presence.Snapshot(re))
	}
}

// handlePresenceStream answers GET /api/presence/stream?match=RE&interval=3s
// with server-sent events: a "state" event with the presence of the
// matching rooms, then a "diff" event ({joins, leaves}) every interval in
// which something changed.
func (a *presenceAPI) handlePresenceStream(w http.ResponseWriter, r *http.Request) {
	re := a.match(w, r)
	if re == nil {
		return
	}
	interval := a.interval
	if v := r.URL.Query().Get("interval"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minPresenceInterval || d > maxPresenceInterval {
			a.fail(w, http.StatusBadRequest, fmt.Sprintf("interval must be a duration from %v to %v", minPresenceInterval, maxPresenceInterval))
			return
		}
		interval = d
	}
	s := a.startSSE(w)
	if s == nil {
		return
	}
	sub := a.presence.Subscribe(re)
	defer sub.Close()
	if s.send("state", sub.Take().State) != nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	quiet := time.Now()
	for {
		select {
		case <-r.Context().Done():
			return
		case now := <-t.C:
			msg := sub.Take()
			var err error
			switch {
			case msg != nil:
				err = s.send("diff", PresenceStreamDiff{Joins: msg.Joins, Leaves: msg.Leaves})
				quiet = now
			case now.Sub(quiet) >= sseKeepAlive:
				err = s.keepAlive()
				quiet = now
			}
			if err != nil {
				return
			}
		}
	}
}

// PresenceStreamDiff is the data of a "diff" event of /api/presence/stream:
// by room, then by user, the metas that joined and those that left.
type PresenceStreamDiff struct {
	Joins  map[string]map[string]codec.PresenceEntry `json:"joins,omitempty"`
	Leaves map[string]map[string]codec.PresenceEntry `json:"leaves,omitempty"`
}

// stopPresence ends the session's presence subscriptions and waits for
// their goroutines.
func (ss *session) stopPresence() {
	p := &ss.presence
	p.mu.Lock()
	for ref, stop := range p.stop {
		close(stop)
		delete(p.stop, ref)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
