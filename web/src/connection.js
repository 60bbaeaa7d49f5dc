// Connection keeps the page in its room: it asks the server for its
// WebTransport URL and certificate hashes, opens the session, says hello,
// joins, and when the session drops does it all again with backoff. It joins
// as the same user and device every time, so that the server resumes the
// avatar and the others see no one leave (docs/PROTOCOL.md §5): with the
// token it was given, or else the one a server in development mode hands
// back in its joined reply.
//
// A posecast cluster runs each room on one node. The page asks
// /cert-hash?room= so that it goes straight to that node; when a room is not
// (or no longer) where the page joined it, the server says where it lives
// (code moved) and the page goes there at once, a few times in a row at most.
import { encodeFrame, FrameReader } from './frames.js';
import { DATAGRAM_PING, datagramKind, parsePing, pingDatagram } from './pose.js';

// Refusals of a hello or a join that another try would get again.
const FATAL = new Set(['invalid', 'forbidden', 'room_full', 'unauthorized', 'unsupported']);

// Goodbyes after which the page does not come back: replaced says that
// this device joined again on another session (a copy of the tab, which
// shares its device id), and coming back would take it from that one.
const FINAL = new Set(['replaced']);

// Moves followed at once without a join in between; past that, the page
// waits its backoff and asks /cert-hash?room= again, so that nodes that
// disagree on where a room lives cannot keep it hopping between them.
const MAX_MOVES = 3;

// refusal returns the error for a server's error or goodbye message.
function refusal(m) {
  const e = new Error(`${m.code}: ${m.message}`);
  e.code = m.code;
  e.moved = m.moved;
  return e;
}

// destination names, for the status, the node a moved location is on, or
// returns '' when the location has no WebTransport URL to go to.
function destination(moved) {
  try {
    const u = new URL(moved.url);
    if (u.protocol === 'https:') return moved.node || u.host;
  } catch {
    // no URL, or not one
  }
  return '';
}

// certHashes returns a /cert-hash answer's or a moved location's hashes as
// WebTransport's serverCertificateHashes.
function certHashes(info) {
  return [info.current, info.next].filter(Boolean).map((h) => ({
    algorithm: 'sha-256',
    value: Uint8Array.from(atob(h.base64), (c) => c.charCodeAt(0)),
  }));
}

export class Connection {
  // opts: base (the server's HTTP URL), join ({room, device, name, token},
  // whose token is replaced by one the server hands back), wtURL (a
  // WebTransport URL to use instead of the one /cert-hash names),
  // onMessage(msg), onDatagram(bytes), onState(), and for tests fetch,
  // WebTransport, backoffMin, backoffMax, connectTimeout, pingEvery.
  constructor(opts) {
    this.opts = { backoffMin: 500, backoffMax: 10000, connectTimeout: 5000, pingEvery: 1000, ...opts };
    this.fetch = opts.fetch || globalThis.fetch.bind(globalThis);
    this.WebTransport = opts.WebTransport || globalThis.WebTransport;
    this.state = 'idle'; // connecting, connected, reconnecting, failed, closed
    this.detail = '';
    this.url = '';
    this.sessions = 0; // sessions that joined
    this.rtt = null; // the latest datagram round trip, ms
    this.minRtt = 0; // the least round trip of the session, ms; 0 until one is measured
    this.wt = null;
    this.writer = null;
    this.dgWriter = null;
    this.nextRef = 1;
    this.waiters = new Map();
    this.pings = new Map();
    this.stopped = false;
    this.wake = null;
    this.goodbye = null; // the server's last word on the session, if it said one
    this.location = null; // where a moved sent the next session, instead of /cert-hash
  }

  setState(state, detail = '') {
    this.state = state;
    this.detail = detail;
    this.opts.onState?.();
  }

  // run keeps a session going until stop. It resolves when it gives up on
  // a join that cannot succeed, or after stop.
  async run() {
    let attempt = 0;
    let moves = 0; // moves followed since the last join
    while (!this.stopped) {
      this.setState(this.sessions ? 'reconnecting' : 'connecting', this.detail);
      let fatal = false;
      let moved = null; // where the server said the room lives, refusing a join or saying goodbye
      try {
        this.goodbye = null;
        await this.session(() => { attempt = moves = 0; });
        this.detail = this.goodbye ? `${this.goodbye.code}: ${this.goodbye.message}` : 'session closed';
        if (this.goodbye?.code === 'moved') moved = this.goodbye.moved || {};
        fatal = FINAL.has(this.goodbye?.code);
      } catch (e) {
        this.detail = e.message;
        fatal = FATAL.has(e.code);
        if (e.code === 'moved') moved = e.moved || {};
      }
      this.location = null;
      if (this.stopped) break;
      if (fatal) {
        this.setState('failed', this.detail);
        return;
      }
      // The same join, at once, where the room lives: within the reconnect
      // grace the server hands this device over as after any reconnect.
      if (moved && destination(moved) && moves < MAX_MOVES) {
        moves++;
        this.location = moved;
        this.detail = `moved to ${destination(moved)}`;
        continue;
      }
      const wait = Math.min(this.opts.backoffMax, this.opts.backoffMin * 2 ** attempt++) * (0.5 + Math.random() / 2);
      this.setState('reconnecting', this.detail);
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, wait);
      });
    }
    this.setState('closed');
  }

  // stop closes the session without leaving the room, as a closed page does.
  stop() {
    this.stopped = true;
    this.wake?.();
    this.closeSession();
  }

  closeSession() {
    try {
      this.wt?.close();
    } catch {
      // already closed
    }
  }

  // session opens one session and joins; onJoined runs once joined. It
  // resolves when the session ends.
  async session(onJoined) {
    const moved = this.location;
    const info = moved || await this.certHash();
    // wt overrides the URLs /cert-hash names, not the one a move names.
    const urls = this.opts.wtURL && !moved ? [this.opts.wtURL] : [info.url, ...(info.alternates || [])];
    const wt = await this.open(urls, certHashes(info));
    if (this.stopped) {
      wt.close();
      return;
    }
    this.wt = wt;
    this.minRtt = 0; // another session may take another path
    const ended = wt.closed.then(() => {}, () => {});
    try {
      const stream = await wt.createBidirectionalStream();
      this.writer = stream.writable.getWriter();
      this.dgWriter = wt.datagrams.writable.getWriter();
      const reading = this.readLoop(stream.readable);
      const datagrams = this.datagramLoop(wt.datagrams.readable);
      await this.request({ type: 'hello', v: 1, client: 'posecast-web' });
      const j = this.opts.join;
      const joined = await this.request({ type: 'join', room: j.room, device: j.device, name: j.name, token: j.token });
      if (joined.token) j.token = joined.token;
      this.sessions++;
      onJoined();
      this.setState('connected', moved ? `moved to ${destination(moved)}` : '');
      // At once, and then now and then: the pose schedule wants the round trip.
      this.ping();
      const pinger = setInterval(() => this.ping(), this.opts.pingEvery);
      try {
        await Promise.race([ended, reading]);
      } finally {
        clearInterval(pinger);
      }
      this.closeSession();
      await Promise.all([ended, reading, datagrams]);
    } finally {
      this.closeSession();
      this.endWaiters();
      this.pings.clear();
      this.wt = this.writer = this.dgWriter = null;
    }
  }

  // certHash asks for the URL and certificate hashes of the node the room
  // lives on.
  async certHash() {
    const url = new URL('/cert-hash', this.opts.base);
    url.searchParams.set('room', this.opts.join.room);
    // With a token the node may hold the room for this join.
    if (this.opts.join.token) url.searchParams.set('token', this.opts.join.token);
    const r = await this.fetch(url, { cache: 'no-store' });
    if (!r.ok) {
      // A server that cannot place the room says why.
      const why = await r.json().then((b) => b?.error, () => '');
      throw new Error(`GET /cert-hash: ${r.status}${why ? ` ${why}` : ''}`);
    }
    return r.json();
  }

  // open returns the first of urls whose session becomes ready in time.
  async open(urls, hashes) {
    let last;
    for (const url of urls) {
      const wt = new this.WebTransport(url, { serverCertificateHashes: hashes });
      let timer;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${url}: no answer`)), this.opts.connectTimeout);
      });
      try {
        await Promise.race([wt.ready, late]);
        this.url = url;
        return wt;
      } catch (e) {
        last = e;
        wt.ready.catch(() => {});
        wt.closed.catch(() => {});
        try {
          wt.close();
        } catch {
          // never opened
        }
      } finally {
        clearTimeout(timer);
      }
    }
    throw new Error(`WebTransport: ${last?.message || last}`);
  }

  // readLoop reads control messages until the stream ends.
  async readLoop(readable) {
    const reader = readable.getReader();
    const frames = new FrameReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        for (const m of frames.push(value)) this.handle(m);
      }
    } catch {
      // the stream or the session ended
    } finally {
      this.closeSession();
      this.endWaiters();
    }
  }

  // endWaiters fails the requests still waiting for an answer, with the
  // server's goodbye if it said one (a hello refused as unsupported).
  endWaiters() {
    for (const w of this.waiters.values()) w.reject(this.goodbye ? refusal(this.goodbye) : new Error('session ended'));
    this.waiters.clear();
  }

  handle(m) {
    const w = m.ref ? this.waiters.get(m.ref) : undefined;
    if (w) {
      this.waiters.delete(m.ref);
      if (m.type === 'error') {
        w.reject(refusal(m));
      } else {
        w.resolve(m);
      }
    }
    this.opts.onMessage?.(m);
    if (m.type === 'goodbye') {
      this.goodbye = m;
      this.closeSession();
    }
  }

  async datagramLoop(readable) {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (datagramKind(value) === DATAGRAM_PING) {
          const sent = this.pings.get(parsePing(value));
          if (sent !== undefined) {
            this.rtt = performance.now() - sent;
            this.minRtt = this.minRtt > 0 ? Math.min(this.minRtt, this.rtt) : this.rtt;
          }
          continue;
        }
        this.opts.onDatagram?.(value);
      }
    } catch {
      // the session ended
    }
  }

  // send writes one control message.
  send(msg) {
    if (!this.writer) return Promise.reject(new Error('not connected'));
    return this.writer.write(encodeFrame(msg));
  }

  // request sends msg with a fresh ref and resolves with the answer.
  request(msg) {
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.waiters.set(ref, { resolve, reject });
      this.send({ ...msg, ref }).catch((e) => {
        this.waiters.delete(ref);
        reject(e);
      });
    });
  }

  // ask sends msg with a fresh ref and returns the ref, without waiting: for
  // a request answered by no reply when it works (resync brings an
  // entities_state), but by an error with the ref when refused.
  ask(msg) {
    const ref = this.nextRef++;
    this.send({ ...msg, ref }).catch(() => {});
    return ref;
  }

  // sendDatagram sends bytes as a datagram, dropping them when there is no
  // session: poses are superseded by the next one anyway.
  sendDatagram(bytes) {
    if (this.state !== 'connected' || !this.dgWriter) return false;
    this.dgWriter.write(bytes).catch(() => {});
    return true;
  }

  ping() {
    const id = (this.nextRef++) >>> 0;
    this.pings.set(id, performance.now());
    if (this.pings.size > 8) this.pings.delete(this.pings.keys().next().value);
    this.sendDatagram(pingDatagram(id));
  }
}
