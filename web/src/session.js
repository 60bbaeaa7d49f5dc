// Session is the page's networking, run in its worker (worker.js) so that
// a main thread busy drawing delays neither the pose schedule nor the
// reading of datagrams: the connection, the room's state and the jitter
// buffers' intake, and the pose sent at the times the pacer says, the
// newest that the page posted. It speaks to the page in the messages of
// channel.js.
import { packPoints, unpackPose } from './channel.js';
import { Connection } from './connection.js';
import { PoseSender, TickPacer } from './pacer.js';
import { DATAGRAM_POSES, datagramKind, parsePoseUpdate } from './pose.js';
import { RoomView } from './roomview.js';

// POSE_MAX_AGE is how long the page's newest pose is sent again for, in ms,
// when no newer one comes: past it the page has stopped drawing (a hidden
// tab, a lost headset) and its avatar should go stale, as it did when the
// page sent from its frames.
const POSE_MAX_AGE = 1000;

const STATS_EVERY = 250; // ms between stats for the panel

// SERVER_MESSAGES is every control message type the server sends, and
// what the worker does with it: the room's view folds in those marked
// 'room' and the page is then sent the room's state; 'view' ones the view
// keeps; 'connection' ones the connection answers (refs, goodbye); 'none'
// the page has no use for. A type not here is dropped. The page's tests
// check this against the server's table (web/test/message-types.json).
export const SERVER_MESSAGES = Object.freeze({
  welcome: 'view',
  joined: 'room',
  entities_state: 'room',
  entities_diff: 'room',
  presence_state: 'room',
  presence_diff: 'room',
  event: 'view',
  error: 'view',
  ok: 'connection',
  pong: 'connection',
  goodbye: 'connection',
  presence_collection: 'none', // the page subscribes to no presence collection
});

export class Session {
  // post(msg, transfer) sends a message to the page; connection holds
  // options for Connection (tests give fetch, WebTransport and timings).
  constructor(post, connection = {}) {
    this.post = post;
    this.connection = connection;
    this.shift = 0; // the page's clock minus this one, ms
    this.conn = null;
    this.view = new RoomView();
    this.pacer = null;
    this.sender = null;
    this.pose = null; // the newest pose the page posted
    this.poseAt = 0; // when it came
    this.timer = null; // the pose schedule's
    this.stats = null;
    this.version = -1; // the entity version the page was last sent
  }

  // now returns the time on the page's clock.
  now() {
    return performance.now() + this.shift;
  }

  // handle takes a message from the page.
  handle(m) {
    switch (m.type) {
      case 'start':
        this.start(m);
        break;
      case 'pose':
        this.pose = unpackPose(m.pose);
        this.poseAt = this.now();
        this.arm();
        break;
      case 'leave':
        this.conn?.send({ type: 'leave' }).catch(() => {});
        break;
    }
  }

  start({ base, join, wtURL, hz, copies, origin }) {
    if (this.conn) return;
    if (origin !== undefined) this.shift = performance.timeOrigin - origin;
    this.pacer = new TickPacer({ hz, copies });
    this.sender = new PoseSender(this.pacer, (d) => this.conn.sendDatagram(d));
    this.conn = new Connection({
      ...this.connection,
      base,
      join,
      wtURL,
      onMessage: (msg) => this.message(msg),
      onDatagram: (b) => this.datagram(b),
      onState: () => {
        const c = this.conn;
        this.post({ type: 'status', state: c.state, detail: c.detail, url: c.url, sessions: c.sessions });
        this.arm();
      },
    });
    this.stats = setInterval(() => this.postStats(), STATS_EVERY);
    this.conn.run();
  }

  // stop ends the session, as a closed page does.
  stop() {
    this.conn?.stop();
    clearInterval(this.stats);
    clearTimeout(this.timer);
    this.timer = null;
  }

  message(m) {
    const handling = SERVER_MESSAGES[m.type];
    if (handling === undefined || handling === 'none') return;
    const now = this.now();
    this.view.apply(m, now);
    if (m.type === 'welcome') {
      this.view.welcome(m);
      this.pacer.welcome(m.tick_ms);
    }
    if (m.type === 'joined') {
      this.pacer.joined(m.tick_ms, m.slot);
      this.post({ type: 'joined', msg: m });
    }
    if (handling === 'room') this.postRoom();
    this.postPoints();
  }

  datagram(b) {
    if (datagramKind(b) !== DATAGRAM_POSES) return;
    let u;
    try {
      u = parsePoseUpdate(b);
    } catch {
      return; // not ours to fix: the next update will do
    }
    const now = this.now();
    this.pacer.arrived(u, now);
    // With a ref, so that a resync the server drops is answered, and asked again.
    if (this.view.applyPoses(u, now)) this.view.resyncRef = this.conn.ask({ type: 'resync' });
    this.postPoints();
  }

  // arm sets a timer for when the next pose is due, unless one is set or
  // there is nothing to send it on.
  arm() {
    if (this.timer !== null || !this.pose || this.conn?.state !== 'connected') return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.due();
    }, Math.max(0, this.sender.due - this.now()));
  }

  // due sends the newest pose if one is due, and waits for the next.
  due() {
    const now = this.now();
    if (now - this.poseAt > POSE_MAX_AGE) {
      this.pose = null; // until the page posts again
      return;
    }
    if (this.conn.state === 'connected') this.sender.offer(now, () => this.pose, this.conn.minRtt);
    this.arm();
  }

  postRoom() {
    const v = this.view;
    const m = { type: 'room', room: v.room, user: v.user, slot: v.slot, tickMs: v.tickMs, presence: v.presence && [...v.presence] };
    if (v.version !== this.version) {
      this.version = v.version;
      m.entities = v.entities && [...v.entities];
    }
    this.post(m);
  }

  postPoints() {
    const points = this.view.drain();
    if (points.length === 0) return;
    const m = { type: 'points', ...packPoints(points) };
    this.post(m, [m.data.buffer]);
  }

  postStats() {
    const c = this.conn;
    this.post({
      type: 'stats',
      rtt: c.rtt,
      minRtt: c.minRtt,
      posesSent: this.sender.sent,
      margin: this.pacer.margin,
      updateRate: this.view.updateRate(this.now()),
      resyncs: this.view.resyncs,
    });
  }
}
