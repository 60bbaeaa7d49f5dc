// PoseBuffer is a small jitter buffer for one remote avatar. Poses arrive a
// tick apart (200 ms by default), each stamped with its sender's clock; the
// buffer maps that clock onto the local one and plays the avatar back a
// little in the past, interpolating between the two poses around the
// playback time, so that a few updates a second look smooth.

const WINDOW = 2000; // ms of sender time kept, and over which the clock offset is estimated

export class PoseBuffer {
  // delay is how far behind the newest pose playback runs, in ms: a tick
  // and some jitter.
  constructor(delay) {
    this.delay = delay;
    this.samples = []; // {t: unwrapped sender ms, d: local minus sender ms or NaN, pose, soft}
    this.raw = 0; // the last sender timestamp, to unwrap the 32-bit clock
  }

  // push adds a pose received at local time at (ms, performance.now()), and
  // reports whether it was taken. The caller gives poses in the server's
  // order (RoomView: by pose update seq). One at most a delay older than the
  // newest is a repeat or was reordered on its way to the server and is
  // dropped; one further back starts a new timeline.
  // A soft pose (from the room's entity state, which for a placement carries
  // the server's clock) only fills an empty buffer; the first pose from the
  // sender replaces it.
  push(pose, at, soft = false) {
    const s = this.samples;
    if (s.length > 0 && s.every((x) => x.soft)) s.length = 0;
    if (s.length === 0) {
      this.raw = pose.time;
      s.push({ t: 0, d: at, pose, soft });
      return true;
    }
    const newest = s[s.length - 1];
    let t = newest.t + ((pose.time - this.raw) | 0);
    if (t < newest.t - this.delay && !soft) {
      // Far behind, so from another clock: a device that drives now, or a
      // clock set back. Start a new timeline at this pose, moving on from
      // what is shown over a delay.
      const shown = this.sample(at);
      t = newest.t;
      s.length = 0;
      s.push({ t: t - this.delay, d: NaN, pose: shown, soft: false });
    } else if (t <= newest.t) {
      return false; // a repeat or reordered: nothing new
    }
    this.raw = pose.time;
    if (t - newest.t > 2 * this.delay) {
      // The avatar stood still in between: hold it there until a delay before.
      s.push({ t: t - this.delay, d: NaN, pose: newest.pose, soft: false });
    }
    s.push({ t, d: at - t, pose, soft });
    while (s.length > 2 && s[1].t < t - WINDOW) s.shift();
    return true;
  }

  // offset estimates local minus sender time for the least delayed pose.
  offset() {
    let o = Infinity;
    for (const x of this.samples) if (x.d < o) o = x.d;
    return o;
  }

  // newest returns the last pose received, or null.
  newest() {
    const s = this.samples;
    return s.length ? s[s.length - 1].pose : null;
  }

  // sample returns the pose to show at local time now: {head, left, right}.
  sample(now) {
    const s = this.samples;
    if (s.length === 0) return null;
    const t = now - this.offset() - this.delay;
    if (t >= s[s.length - 1].t) return s[s.length - 1].pose;
    if (t <= s[0].t) return s[0].pose;
    let i = s.length - 1;
    while (s[i - 1].t > t) i--;
    const a = s[i - 1];
    const b = s[i];
    return lerpPose(a.pose, b.pose, (t - a.t) / (b.t - a.t));
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
