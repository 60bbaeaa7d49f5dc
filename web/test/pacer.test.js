import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LATE_TARGET, nextDue, PoseSender, TickPacer } from '../src/pacer.js';

const OWN = 3; // the page's slot
const head = (time, x = 0) => ({ time, head: { position: [x, 1.6, 0], rotation: [0, 0, 0, 1] }, left: null, right: null });
const update = (seq, records, part = 0, parts = 1) => ({ seq, part, parts, records });
const heartbeat = (seq) => update(seq, [], 0, 0);
const own = (seq, time) => update(seq, [{ slot: 1, pose: head(7) }, { slot: OWN, pose: head(time) }]);

// joined returns a pacer that joined a room ticking every period ms.
function joined(period = 200, opts = {}) {
  const p = new TickPacer({ tickMs: period, ...opts });
  p.joined(period, OWN);
  return p;
}

// ticks delivers heartbeats that arrive at the times given.
function ticks(p, times, seq = 1) {
  for (const t of times) p.arrived(heartbeat(seq++), t);
  return seq;
}

const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

test('poses are due in step with the tick', () => {
  const period = 200;
  const cases = [
    // [name, phase, copies, after, now, want]
    ['the first pose waits for the phase', 150, 1, null, 0, 150],
    ['a pose due a moment ago is still sent', 0, 1, null, 10, 0],
    ['a pose due long ago is skipped for the next tick\'s', 0, 1, null, 30, 200],
    ['a phase from long ago still holds', -1000, 1, null, 0, 0],
    ['one pose per tick', 150, 1, 150, 151, 350],
    ['a phase that moved earlier does not send twice for one tick', 140, 1, 150, 151, 340],
    ['a phase that moved later is followed', 210, 1, 150, 151, 210],
    ['a phase that moved a little later waits for the next tick', 180, 1, 150, 151, 380],
    ['two copies: the first a quarter tick early', 150, 2, null, 0, 100],
    ['two copies: the second at the phase', 150, 2, 100, 101, 150],
    ['two copies: then the next tick\'s first', 150, 2, 150, 151, 300],
  ];
  for (const [name, phase, copies, after, now, want] of cases) {
    assert.equal(nextDue({ phase, period, copies, after, now, lateness: period / 8 }), want, name);
  }
});

test('whatever the phase and the time, a run of poses keeps to its tick, one per period', () => {
  for (const period of [50, 200]) {
    for (const phase of [-730, 0, 13, 199, 1234.5678]) {
      let after = null;
      let now = 0;
      for (let i = 0; i < 20; i++) {
        const due = nextDue({ phase, period, copies: 1, after, now, lateness: period / 8 });
        const off = (((due - phase) % period) + period) % period;
        assert.ok(Math.min(off, period - off) < 1e-9, `period ${period} phase ${phase}: pose ${i} due ${off} off the phase`);
        if (after !== null) assert.ok(Math.abs(due - after - period) < 1e-9, `period ${period} phase ${phase}: pose ${i} due ${due - after} after the one before`);
        after = due;
        now = due + 1;
      }
    }
  }
});

test('the phase is the earliest of the recent arrivals, moved to the newest one\'s tick', () => {
  const p = joined(200);
  assert.equal(p.tickPhase(), null);
  ticks(p, [1000, 1212, 1405, 1603]);
  assert.equal(p.tickPhase(), 1600); // the first, three periods on
  ticks(p, [1798], 9); // a faster path: earlier still
  assert.equal(p.tickPhase(), 1798);
  // Only the last 8 count.
  ticks(p, range(8, (i) => 2010 + 200 * i), 20);
  assert.equal(p.tickPhase(), 2010 + 200 * 7);
});

test('a pose is due a round trip and the margin before the tick datagram arrives, one per tick', () => {
  for (const period of [50, 200]) {
    const p = joined(period);
    ticks(p, range(4, (i) => 1000 + period * i));
    const rtt = 2;
    const margin = p.margin;
    assert.equal(margin, period / 10);
    let now = 1000 + 3 * period;
    const dues = [];
    for (let i = 0; i < 6; i++) {
      const due = p.next(now, rtt);
      dues.push(due);
      now = due + 1;
    }
    // The pose sent at now was the tick's: the next is the next tick's.
    const phase = 1000 + 4 * period - rtt - margin;
    assert.deepEqual(dues.map((d) => Math.round((d - phase) * 1000) / 1000), range(6, (i) => i * period), `period ${period}`);
  }
});

test('before any tick arrives, and after a join, poses go out at the tick period', () => {
  for (const copies of [1, 2]) {
    const p = joined(200, { copies });
    const sends = [];
    for (let now = 0; now < 1000; now += 16) {
      if (sends.length === 0 || now >= p.last) {
        sends.push(now);
        p.next(now);
      }
    }
    assert.equal(sends.length, 5 * copies, `copies ${copies}: ${sends}`);
    // A join into another room forgets the first room's ticks.
    ticks(p, [1000, 1200]);
    assert.notEqual(p.tickPhase(), null);
    p.margin = 30;
    p.joined(50, OWN);
    assert.equal(p.tickPhase(), null);
    assert.equal(p.period, 50);
    assert.equal(p.margin, 50 / 10);
    assert.equal(p.next(2000), Math.max(2000, p.last));
  }
});

// frames runs a page at 60 frames a second from `from` to `to` (ms), its
// PoseSender offering a moving pose every frame; tick(now) is called first
// on each frame, to deliver what arrived. It returns the times poses went.
function frames(sender, from, to, tick = () => {}) {
  const sent = [];
  for (let now = from; now < to; now += 1000 / 60) {
    tick(now);
    if (sender.offer(now, () => head(Math.round(now), now / 1000))) sent.push(now);
  }
  return sent;
}

test('a phase that moves never sends twice in a tick', () => {
  const period = 200;
  const p = joined(period);
  const sender = new PoseSender(p, () => {});
  // Ticks arrive at 1000 + k·200, then 15 ms earlier each time down to 60
  // ms (a path that got faster), then 30 ms later (slower again): the phase
  // follows once the earliest arrivals have left the ring.
  let k = 0;
  let seq = 1;
  const arrivalAt = (i) => 1000 + period * i - (i > 20 ? 30 : Math.min(60, Math.max(0, i - 4) * 15));
  const sent = frames(sender, 900, 9000, (now) => {
    while (arrivalAt(k) <= now) p.arrived(heartbeat(seq++), arrivalAt(k++));
  });
  for (let i = 1; i < sent.length; i++) {
    assert.ok(sent[i] - sent[i - 1] >= period / 4, `poses at ${sent[i - 1]} and ${sent[i]}`);
  }
  assert.ok(sent.length <= Math.ceil((9000 - 900) / period) + 1, `${sent.length} poses in ${(9000 - 900) / period} ticks`);
});

test('two copies go a quarter tick apart, the second at the phase', () => {
  const period = 200;
  const p = joined(period, { copies: 2 });
  ticks(p, [1000, 1200, 1400]);
  const margin = p.margin;
  let now = 1450;
  const dues = [];
  for (let i = 0; i < 4; i++) {
    const due = p.next(now, 0);
    dues.push(due - (1600 - margin));
    now = due + 1;
  }
  assert.deepEqual(dues.map((d) => Math.round(d)), [-50, 0, 150, 200]);
});

test('free-running, poses go at the configured rate from a faster render loop', () => {
  for (const [fps, rate] of [[90, 30], [72, 30], [120, 90], [60, 20]]) {
    const p = new TickPacer({ hz: rate });
    const sent = [];
    const sender = new PoseSender(p, (d) => sent.push(d));
    let count = 0;
    for (let t = 0; t < 10000; t += 1000 / fps) {
      count++;
      sender.offer(t, () => head(Math.round(t)));
      p.arrived(heartbeat(count), t); // the tick changes nothing
    }
    const perSecond = sent.length / 10;
    assert.ok(Math.abs(perSecond - rate) <= 0.5, `${fps} fps at ${rate}/s sent ${perSecond}/s`);
    assert.ok(sent.length < count);
  }
});

test('a frame with nothing tracked sends nothing, and the next one that has a pose sends it', () => {
  const sent = [];
  const sender = new PoseSender(new TickPacer(), (d) => sent.push(d));
  assert.equal(sender.offer(0, () => null), false);
  assert.equal(sender.offer(16, () => head(16)), true);
  assert.equal(sent.length, 1);
  assert.equal(sender.sent, 1);
});

test('the margin learns from the page\'s own avatar in the pose updates', () => {
  const period = 200;
  const step = period / 40;
  // ready is a pacer past 16 arrivals, that sent poses at times 10 and 20.
  const ready = () => {
    const p = joined(period);
    ticks(p, range(16, (i) => 1000 + period * i), 100);
    p.sent(10);
    p.sent(20);
    return p;
  };
  const cases = [
    // [name, what happens, the margin's change]
    ['the newest pose in time shrinks it', (p) => p.arrived(own(1, 20), 0), -step / (LATE_TARGET - 1)],
    ['the pose before it, the newest late, grows it', (p) => p.arrived(own(1, 10), 0), step],
    ['an older pose says nothing', (p) => p.arrived(own(1, 5), 0), 0],
    ['an update without the avatar says nothing', (p) => p.arrived(update(1, [{ slot: 1, pose: head(20) }]), 0), 0],
    ['a heartbeat says nothing', (p) => p.arrived(heartbeat(1), 0), 0],
    ['one update, in two parts, is judged once', (p) => { p.arrived(own(1, 10), 0); p.sent(30); p.arrived(update(1, [{ slot: OWN, pose: head(20) }], 1, 2), 0); }, step],
    ['nothing sent since the last judgement: nothing more', (p) => { p.arrived(own(1, 10), 0); p.arrived(own(2, 10), 0); }, step],
    ['a send since the last judgement: judged again', (p) => { p.arrived(own(1, 10), 0); p.sent(30); p.arrived(own(2, 20), 0); }, 2 * step],
    ['a pose that did not move says nothing', (p) => { p.sent(30, false); p.arrived(own(1, 20), 0); }, 0],
    ['a join starts over', (p) => { p.arrived(own(1, 10), 0); p.joined(period, OWN); p.sent(40); p.arrived(own(2, 40), 0); }, 0],
  ];
  for (const [name, happen, change] of cases) {
    const p = ready();
    const before = p.margin;
    happen(p);
    assert.ok(Math.abs(p.margin - before - change) < 1e-9, `${name}: margin ${before} -> ${p.margin}, want ${change >= 0 ? '+' : ''}${change}`);
  }
});

test('no judgement before 16 arrivals since the join, nor without the page\'s slot', () => {
  const p = joined(200);
  const seq = ticks(p, range(14, (i) => 1000 + 200 * i));
  p.sent(10);
  p.sent(20);
  const before = p.margin;
  p.arrived(own(seq, 10), 4000); // the 15th arrival
  assert.equal(p.margin, before);
  p.arrived(own(seq + 1, 10), 4200); // the 16th
  assert.equal(p.margin, before + 200 / 40);
  const fresh = new TickPacer();
  ticks(fresh, range(16, (i) => 200 * i));
  fresh.sent(10);
  fresh.sent(20);
  fresh.arrived(own(99, 10), 4000);
  assert.equal(fresh.margin, 200 / 10, 'judged before a join');
});

test('the margin stays between half a millisecond and half a tick', () => {
  const p = joined(50);
  let seq = ticks(p, range(16, (i) => 50 * i));
  for (let i = 0; i < 100; i++) {
    p.sent(2 * i + 1);
    p.sent(2 * i + 2);
    p.arrived(own(seq++, 2 * i + 1), 0);
  }
  assert.equal(p.margin, 25);
  for (let i = 0; i < 20000; i++) {
    p.sent(i + 1000);
    p.arrived(own(seq++, i + 1000), 0);
  }
  assert.equal(p.margin, 0.5);
});

// mulberry32 is a small seeded random number generator, for runs that are
// the same every time.
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('against a ticking server, the page sends one pose per tick and learns a margin that keeps most in time', () => {
  for (const period of [50, 200]) {
    const random = mulberry32(period);
    const oneWay = 4; // ms each way, and up to 2 ms of jitter
    const p = joined(period);
    const sender = new PoseSender(p, () => {});
    const phase = 7.3; // when the server's ticks fall
    const toServer = []; // [arrival at the server, pose time]
    const toPage = []; // [arrival at the page, update]
    let held = null; // the pose time the server holds
    let nextTick = phase;
    let seq = 1;
    let forwarded = null; // the pose time the tick before forwarded
    let stale = 0; // ticks that read no newer pose than the tick before
    let read = 0;
    const end = 60000;
    for (let now = 0; now < end; now += 1000 / 60 + (random() - 0.5)) {
      // The server, up to now: poses arrive, ticks forward the newest.
      for (;;) {
        const pose = toServer[0];
        const tick = nextTick;
        if (pose && pose[0] <= tick && pose[0] <= now) {
          held = toServer.shift()[1];
        } else if (tick <= now) {
          if (held !== null) {
            if (held === forwarded) stale++; // the tick's pose came late
            forwarded = held;
            read++;
          }
          const u = held === null ? heartbeat(seq) : own(seq++, held);
          toPage.push([tick + oneWay + random() * 2, u]);
          nextTick += period;
        } else {
          break;
        }
      }
      toPage.sort((a, b) => a[0] - b[0]);
      while (toPage.length && toPage[0][0] <= now) {
        const [at, u] = toPage.shift();
        p.arrived(u, at);
      }
      const time = Math.round(now);
      if (sender.offer(now, () => head(time, now / 1000), 2 * oneWay)) toServer.push([now + oneWay + random() * 2, time]);
    }
    const perTick = sender.sent / (end / period);
    assert.ok(perTick > 0.97 && perTick <= 1.01, `period ${period}: ${perTick} poses per tick`);
    // The frames send up to 17 ms after a pose is due: the margin covers that.
    assert.ok(p.margin > 5 && p.margin < Math.min(25, period / 2), `period ${period}: margin ${p.margin}`);
    assert.ok(stale / read < 0.02, `period ${period}: ${stale} of ${read} ticks read no newer pose`);
  }
});
