// When the page sends its poses, as transport/client's Pacer decides for the
// Go client. Times are performance.now() milliseconds.
//
// In step with the tick (the default), the page sends its newest pose once
// per tick of its room, timed to reach the server shortly before the tick
// reads it. The server reads each member's newest pose once per tick, so a
// pose sent faster than that is overwritten unread, and a pose that reaches
// the server just before a tick is as young as a forwarded pose can be. The
// room's pose updates give the tick's phase: each leaves the server at a
// tick and arrives about half a round trip later, so a pose sent one round
// trip and a margin before the next such arrival reaches the server a margin
// before that tick. A lost update leaves the phase as it was, and the
// schedule goes on at the tick period; before the first one arrives, poses
// go out at the tick period.
//
// Free-running (hz positive), the page sends hz poses a second whatever the
// tick, as a headset that sends every frame's pose does.

import { poseDatagram, samePlace } from './pose.js';

// ARRIVALS is how many ticks' arrivals the phase is taken from.
const ARRIVALS = 8;

// LATE_TARGET is one in how many poses the pacer lets come too late for
// their tick: each costs the others a tick of staleness.
export const LATE_TARGET = 500;

const MIN_MARGIN = 0.5; // ms

export class TickPacer {
  // opts: hz, when positive, the free-running rate in poses a second;
  // copies, how many poses are sent per tick, 1 (the default) or 2 (for
  // lossy links: the second goes a quarter tick after the first, both due
  // before the tick, so that when one is lost the other is read); tickMs,
  // the tick period until the server says it.
  constructor({ hz = 0, copies = 1, tickMs = 200 } = {}) {
    this.hz = hz > 0 ? hz : 0;
    this.copies = copies === 2 ? 2 : 1;
    this.period = tickMs;
    // arrivals are when the latest ticks' first pose update datagrams
    // arrived (null for none), written in turn at arrivalN.
    this.arrivals = new Array(ARRIVALS).fill(null);
    this.arrivalN = 0;
    // ownSlot is the joined avatar's slot (-1 before a join). sentPoses are
    // the times of the last two poses sent, the newest first, and newestMoved
    // whether the newest differs from the one before other than in its time;
    // sentCount counts them. margin is how long before the tick a pose is
    // aimed to arrive, in ms, adjusted by judgeOwnPose.
    this.ownSlot = -1;
    this.sentPoses = [null, null];
    this.newestMoved = true;
    this.sentCount = 0;
    this.margin = tickMs / 10;
    // The pose update and the count of poses sent at the last judgement.
    this.judgedSeq = null;
    this.judgedCount = 0;
    this.last = null; // when the previous pose was due; null before the first
  }

  // welcome takes the server's tick period, for the time before a join.
  welcome(tickMs) {
    if (tickMs > 0) this.period = tickMs;
  }

  // joined starts over in a room: its tick period, the avatar's slot, and no
  // arrivals, since another room ticks at its own times.
  joined(tickMs, slot) {
    if (tickMs > 0) this.period = tickMs;
    this.arrivals.fill(null);
    this.arrivalN = 0;
    this.ownSlot = slot;
    this.margin = this.period / 10;
    this.judgedSeq = null;
  }

  // arrived takes a pose update u (parsePoseUpdate's) that arrived at now:
  // the first datagram of a tick's, heartbeats included, times the tick.
  arrived(u, now) {
    if (u.part === 0) {
      this.arrivalN++;
      this.arrivals[this.arrivalN % ARRIVALS] = now;
    }
    this.judgeOwnPose(u);
  }

  // sent notes a pose sent with its time (the record's, poseTime's); moved
  // says whether it differs from the pose sent before it other than in its
  // time.
  sent(time, moved = true) {
    this.sentPoses = [time, this.sentPoses[0]];
    this.newestMoved = moved;
    this.sentCount++;
  }

  // tickPhase returns the earliest that the latest ticks' first pose update
  // datagrams arrived, each moved by whole periods to the newest one's: the
  // time a tick's datagram arrives when nothing delays it, which the
  // schedule steps from. Delays only ever make a datagram later, so the
  // earliest of a few is the truest. It returns null before any has arrived
  // since the join.
  tickPhase() {
    const newest = this.arrivals[this.arrivalN % ARRIVALS];
    if (newest === null || !(this.period > 0)) return null;
    let phase = newest;
    for (const a of this.arrivals) {
      if (a === null) continue;
      phase = Math.min(phase, a + Math.floor((newest - a + this.period / 2) / this.period) * this.period);
    }
    return phase;
  }

  // next returns when the next pose is due: now, or later. Call it once per
  // pose sent, after sending it; minRtt is the least round trip measured on
  // the session, 0 while none is.
  next(now, minRtt = 0) {
    // The first pose was due when it went: the next follows it.
    const after = this.last ?? now;
    if (this.hz > 0) {
      this.last = Math.max(now, after + 1000 / this.hz);
      return this.last;
    }
    const arrival = this.tickPhase();
    if (arrival === null) {
      this.last = Math.max(now, after + this.period / this.copies);
      return this.last;
    }
    // The round trip's floor: what the path adds beyond it (the worker's
    // timer among it), the margin learns.
    const due = nextDue({
      phase: arrival - minRtt - this.margin,
      period: this.period,
      copies: this.copies,
      after,
      now,
      lateness: this.period / 8,
    });
    this.last = due;
    return Math.max(now, due);
  }

  // judgeOwnPose adjusts the margin from the page's own avatar in a pose
  // update: a tick that forwards the newest pose sent before it shows the
  // pose arrived in time, one that forwards the pose before that shows the
  // newest came late. The margin tracks the lateness the page meets so that
  // one pose in LATE_TARGET is late: a late pose adds a fortieth of the tick
  // period, a pose in time takes LATE_TARGET-1 times less. It starts at a
  // tenth of the period: a late pose costs the others a tick of staleness, a
  // margin too wide only a few milliseconds. A tick that
  // carries neither (the avatar did not move, or nothing was sent since the
  // last judgement) says nothing, and neither do the ticks before the pacer
  // has its phase from a full set of arrivals. Nor does one after a pose
  // that did not move: the server keeps the time of the first of a run of
  // unchanged poses, which the older time may be without the newest being
  // late.
  judgeOwnPose(u) {
    if (this.ownSlot < 0 || u.parts === 0 || u.seq === this.judgedSeq || this.sentCount === this.judgedCount ||
      this.arrivalN < 2 * ARRIVALS) {
      return;
    }
    const own = u.records.find((r) => r.slot === this.ownSlot);
    if (!own) return;
    this.judgedSeq = u.seq;
    this.judgedCount = this.sentCount;
    if (!this.newestMoved) return;
    let margin = this.margin;
    switch (own.pose.time) {
      case this.sentPoses[0]:
        margin -= this.period / 40 / (LATE_TARGET - 1);
        break;
      case this.sentPoses[1]:
        margin += this.period / 40;
        break;
      default:
        return;
    }
    this.margin = Math.min(this.period / 2, Math.max(MIN_MARGIN, margin));
  }
}

// nextDue returns when the next pose of plan is due. plan: phase, a time at
// which a pose is due (the tick datagram's arrival, less the round trip and
// the margin; poses are due one period apart from it, both ways); period;
// copies, how many poses are due per period, a quarter period apart, the
// last of them at the phase; after, when the previous pose was due (null for
// none), which the next follows by more than an eighth of the period per
// copy; now, before which a pose due longer ago than lateness is skipped.
export function nextDue({ phase, period, copies, after, now, lateness }) {
  const spacing = period / 4;
  let earliest = now - lateness;
  if (after !== null) earliest = Math.max(earliest, after + period / (4 * copies) + 1e-6); // later by a nanosecond
  // The first copy of the tick whose poses are due at or after earliest.
  const first = phase - (copies - 1) * spacing;
  for (let k = Math.floor((earliest - first) / period); ; k++) {
    const base = first + k * period;
    for (let j = 0; j < copies; j++) {
      const at = base + j * spacing;
      if (at >= earliest) return at;
    }
  }
}

// PoseSender sends the page's poses as its pacer says: a pose due goes out
// when offered at or after the time it is due. The page's worker offers it
// on a timer set for that time (session.js), whatever the main thread is
// doing; the margin learns the timer's lateness with the network's.
export class PoseSender {
  // pacer is a TickPacer; send(datagram) sends a pose datagram.
  constructor(pacer, send) {
    this.pacer = pacer;
    this.send = send;
    this.due = -Infinity; // when the next pose is due
    this.record = null; // the last pose record sent
    this.sent = 0;
  }

  // offer sends pose() if one is due at local time now (ms); pose may
  // return null (nothing tracked), and nothing is sent until it gives one.
  // minRtt is the session's least round trip (0 while unknown).
  offer(now, pose, minRtt = 0) {
    if (now < this.due) return false;
    const p = pose();
    if (!p) return false;
    const d = poseDatagram(p);
    this.send(d);
    const record = d.subarray(4);
    this.pacer.sent(p.time, !this.record || !samePlace(record, this.record));
    this.record = record;
    this.sent++;
    this.due = this.pacer.next(now, minRtt);
    return true;
  }
}
