// The jitter buffer of a remote avatar. Poses arrive stamped with their
// sender's clock, a tick apart (200 ms by default) or, for an avatar far
// away in a room with interest management, a few ticks apart; the buffer
// maps that clock onto the local one and plays the avatar back a little in
// the past, interpolating between the poses around the playback time, so
// that a few updates a second look smooth.
//
// It comes in two halves, so that poses can be taken where they arrive and
// shown where frames are drawn:
// PoseIntake takes an avatar's poses and turns each new one into a point to
// play out; PosePlayback holds the points and samples them at a frame's
// time. PoseBuffer is both halves in one.
//
// The playout delay follows each avatar's own updates: the longest of its
// last few update intervals (at least a tick), and a margin for the
// network's jitter. Playback changes its lag behind the sender gradually,
// running a little slower or faster than real time, so that neither a new
// delay nor a new clock offset makes the avatar jump.

const WINDOW = 2000; // ms of sender time over which the clock offset is estimated, and kept behind playback
const ARRIVALS = 8; // the fewest poses the clock offset is estimated from, for an avatar whose updates are far apart
const JITTER = 50; // ms of delay beyond the update interval
const INTERVALS = 4; // how many of an avatar's latest update intervals its delay follows
const SLOWER = 0.5; // at most this much slower than real time while the lag grows (ms per ms)
const FASTER = 0.25; // at most this much faster while it shrinks

// Kinds of point: the next on the timeline; the first, which replaces
// whatever was shown; the first of a new timeline (another device drives
// the avatar, or its clock was set back), which playback reaches from what
// it shows.
export const NEXT = 0;
export const START = 1;
export const RESTART = 2;

export class PoseIntake {
  // tickMs is the room's tick period; maxInterval the longest an avatar's
  // updates come apart while it moves (far_every ticks under interest
  // management). A gap of more than twice that is the avatar standing
  // still, and does not lengthen its delay.
  constructor({ tickMs = 200, maxInterval = tickMs } = {}) {
    this.tickMs = tickMs;
    this.maxInterval = Math.max(tickMs, maxInterval);
    this.intervals = []; // the latest update intervals, ms of sender time
    this.delay = tickMs + JITTER; // how far behind the newest pose playback aims to run, ms
    this.arrivals = []; // {t, d}: local arrival minus sender time of the poses within WINDOW of the newest, ARRIVALS at least
    this.pose = null; // the newest pose taken
    this.soft = false; // whether only the room state gave poses so far, not the sender
    this.t = 0; // its unwrapped sender time
    this.raw = 0; // its 32-bit sender time, to unwrap the next
  }

  // push takes a pose received at local time at (ms) and returns the point
  // to play out, {kind, t, pose, offset, delay}, or null when the pose
  // brings nothing new. The caller gives poses in the server's order
  // (RoomView: by pose update seq). One at most a delay older than the
  // newest is a repeat or was reordered on its way to the server and is
  // dropped; one further back starts a new timeline. A soft pose (from the
  // room's entity state, which for a placement carries the server's clock)
  // only fills an empty buffer; the first pose from the sender replaces it.
  push(pose, at, soft = false) {
    if (this.pose === null || (this.soft && !soft)) {
      this.intervals = [];
      this.delay = this.tickMs + JITTER;
      return this.take(START, pose, 0, at, soft);
    }
    const t = this.t + ((pose.time - this.raw) | 0);
    if (t < this.t - this.delay && !soft) {
      // Far behind, so from another clock. The new timeline goes on from
      // the old one's newest time.
      this.arrivals = [];
      return this.take(RESTART, pose, this.t, at, soft);
    }
    if (t <= this.t) return null; // a repeat or reordered: nothing new
    const gap = t - this.t;
    if (!this.soft && gap <= 2 * this.maxInterval) {
      this.intervals.push(gap);
      if (this.intervals.length > INTERVALS) this.intervals.shift();
      this.delay = Math.max(this.tickMs, ...this.intervals) + JITTER;
    }
    return this.take(NEXT, pose, t, at, soft);
  }

  take(kind, pose, t, at, soft) {
    this.pose = pose;
    this.soft = soft && (kind === START || this.soft);
    this.t = t;
    this.raw = pose.time;
    this.arrivals.push({ t, d: at - t });
    while (this.arrivals.length > ARRIVALS && this.arrivals[0].t < t - WINDOW) this.arrivals.shift();
    return { kind, t, pose, offset: this.offset(), delay: this.delay };
  }

  // offset estimates local minus sender time from the least delayed pose.
  offset() {
    let o = Infinity;
    for (const a of this.arrivals) if (a.d < o) o = a.d;
    return o;
  }
}

export class PosePlayback {
  constructor() {
    this.points = []; // {t: sender ms, pose}, t increasing
    // The lag of playback behind local time (offset and delay), ms: lag0
    // at lagAt, moving towards target at most SLOWER or FASTER ms per ms.
    this.lag0 = 0;
    this.lagAt = 0;
    this.target = 0;
    this.delay = 0; // the newest point's delay, ms
  }

  // lag returns the lag at local time now.
  lag(now) {
    const dt = Math.max(0, now - this.lagAt);
    const d = this.target - this.lag0;
    return this.lag0 + (d > 0 ? Math.min(d, SLOWER * dt) : Math.max(d, -FASTER * dt));
  }

  // add takes a point of PoseIntake's at local time now.
  add(point, now) {
    const lag = point.offset + point.delay;
    const s = this.points;
    this.delay = point.delay;
    if (point.kind === START || s.length === 0) {
      this.points = [{ t: point.t, pose: point.pose }];
      this.lag0 = this.target = lag;
      this.lagAt = now;
      return;
    }
    if (point.kind === RESTART) {
      // Move on from what is shown, over what is left of the delay.
      const shown = this.sample(now);
      this.lag0 = this.target = lag;
      this.lagAt = now;
      const from = now - lag;
      this.points = from < point.t ? [{ t: from, pose: shown }] : [];
      this.points.push({ t: point.t, pose: point.pose });
      return;
    }
    const p = now - this.lag(now);
    const last = s[s.length - 1];
    // Held at the newest pose, waiting: move on from there, not from where
    // the sender was when it sent that pose.
    if (p > last.t && p < point.t) s.push({ t: p, pose: last.pose });
    s.push({ t: point.t, pose: point.pose });
    this.lag0 = this.lag(now);
    this.lagAt = now;
    this.target = lag;
    while (s.length > 2 && s[1].t < p - WINDOW) s.shift();
  }

  // sample returns the pose to show at local time now: {time, head, left,
  // right}, or null before the first point.
  sample(now) {
    const s = this.points;
    if (s.length === 0) return null;
    const t = now - this.lag(now);
    if (t >= s[s.length - 1].t) return s[s.length - 1].pose;
    if (t <= s[0].t) return s[0].pose;
    let i = s.length - 1;
    while (s[i - 1].t > t) i--;
    const a = s[i - 1];
    const b = s[i];
    return lerpPose(a.pose, b.pose, (t - a.t) / (b.t - a.t));
  }
}

// PoseBuffer is the jitter buffer in one place: an intake whose points go
// straight to a playback.
export class PoseBuffer {
  // opts are PoseIntake's.
  constructor(opts) {
    this.intake = new PoseIntake(opts);
    this.playback = new PosePlayback();
  }

  // push is PoseIntake.push; it reports whether the pose was taken.
  push(pose, at, soft = false) {
    const point = this.intake.push(pose, at, soft);
    if (point) this.playback.add(point, at);
    return point !== null;
  }

  // newest returns the last pose taken, or null.
  newest() {
    return this.intake.pose;
  }

  sample(now) {
    return this.playback.sample(now);
  }
}

function lerpPose(a, b, f) {
  return {
    time: b.time,
    head: lerpTransform(a.head, b.head, f),
    left: a.left && b.left ? lerpTransform(a.left, b.left, f) : f < 0.5 ? a.left : b.left,
    right: a.right && b.right ? lerpTransform(a.right, b.right, f) : f < 0.5 ? a.right : b.right,
  };
}

function lerpTransform(a, b, f) {
  return {
    position: a.position.map((v, i) => v + (b.position[i] - v) * f),
    rotation: nlerp(a.rotation, b.rotation, f),
  };
}

// nlerp interpolates unit quaternions along the shorter arc and normalizes;
// for the small turns between two ticks it is as good as slerp.
export function nlerp(a, b, f) {
  const dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
  const sign = dot < 0 ? -1 : 1;
  const q = a.map((v, i) => v + (sign * b[i] - v) * f);
  const n = Math.hypot(...q) || 1;
  return q.map((v) => v / n);
}
