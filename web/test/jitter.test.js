import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nlerp, PoseBuffer } from '../src/jitter.js';

const pose = (time, x) => ({ time, head: { position: [x, 1.6, 0], rotation: [0, 0, 0, 1] }, left: null, right: null });
const near = (a, b, eps = 1e-9) => Math.abs(a - b) <= eps;

// feed sends a sender moving at 1 m/s, sampled every 200 ms, through a
// network whose delay varies by up to jitter ms; it returns the buffer.
function feed({ ticks, jitter = 0, clock = 0 }) {
  const b = new PoseBuffer({ tickMs: 200 });
  for (let i = 0; i < ticks; i++) {
    const sent = i * 200;
    const delay = 20 + (jitter * ((i * 7) % 5)) / 4;
    b.push(pose((clock + sent) >>> 0, sent / 1000), 50000 + sent + delay);
  }
  return b;
}

test('playback runs a tick behind and interpolates between ticks', () => {
  const b = feed({ ticks: 10 });
  // The newest pose (x = 1.8) came at 51820; offset 50020, so local time
  // t shows the sender's t - 50020 - 250.
  for (const at of [51500, 51555, 51610, 51700]) {
    const want = (at - 50020 - 250) / 1000;
    assert.ok(near(b.sample(at).head.position[0], want, 1e-6), `at ${at}: ${b.sample(at).head.position[0]} want ${want}`);
  }
});

test('jitter in arrival does not make the avatar jump back', () => {
  const b = feed({ ticks: 20, jitter: 60 });
  let prev = -Infinity;
  for (let at = 52000; at < 54500; at += 16) {
    const x = b.sample(at).head.position[0];
    assert.ok(x >= prev - 1e-9, `went back from ${prev} to ${x} at ${at}`);
    prev = x;
  }
});

test('the sender clock may wrap around 32 bits', () => {
  const b = feed({ ticks: 10, clock: 2 ** 32 - 700 });
  assert.ok(near(b.sample(51700).head.position[0], (51700 - 50020 - 250) / 1000, 1e-6));
  assert.deepEqual(b.newest().head.position[0], 1.8);
});

test('repeats and reordered poses change nothing', () => {
  const b = new PoseBuffer({ tickMs: 200 });
  assert.equal(b.push(pose(1000, 1), 0), true);
  assert.equal(b.push(pose(1200, 2), 200), true);
  assert.equal(b.push(pose(1200, 2), 400), false);
  assert.equal(b.push(pose(1100, 9), 410), false);
  assert.equal(b.newest().head.position[0], 2);
});

test('past the newest pose the avatar holds still', () => {
  const b = feed({ ticks: 5 });
  assert.equal(b.sample(99999).head.position[0], 0.8);
});

test('after standing still it starts moving from where it stood, a tick before the new pose', () => {
  const b = new PoseBuffer({ tickMs: 200 });
  b.push(pose(0, 0), 20);
  b.push(pose(5000, 1), 5020);
  // Local time t shows sender time t - 20 - 250; it stood still until 4750.
  assert.equal(b.sample(5020).head.position[0], 0);
  assert.ok(near(b.sample(5145).head.position[0], 0.5));
  assert.equal(b.sample(5270).head.position[0], 1);
});

test('a placement from the room state gives way to the sender own clock', () => {
  const b = new PoseBuffer({ tickMs: 200 });
  b.push(pose(900000, 5), 0, true); // the server's clock, far ahead of the sender's
  assert.equal(b.sample(0).head.position[0], 5);
  assert.equal(b.push(pose(1000, 6), 10), true);
  assert.equal(b.playback.points.length, 1);
  assert.equal(b.sample(10).head.position[0], 6);
  // Once the sender is heard, a state's pose is just another pose.
  assert.equal(b.push(pose(900, 7), 20, true), false);
});

test('hands are interpolated when both poses have them', () => {
  const b = new PoseBuffer({ tickMs: 100 }); // a delay of 150 ms
  const hand = (x) => ({ position: [x, 1, 0], rotation: [0, 0, 0, 1] });
  b.push({ ...pose(0, 0), right: hand(0) }, 0);
  b.push({ ...pose(100, 1), right: hand(1), left: hand(5) }, 100);
  const p = b.sample(200);
  assert.ok(near(p.right.position[0], 0.5));
  assert.equal(p.left.position[0], 5);
});

test('nlerp takes the short way round and stays unit', () => {
  const s = Math.SQRT1_2;
  const q = nlerp([0, 0, 0, 1], [0, -s, 0, -s], 0.5); // -q is the same 90° turn
  assert.ok(near(Math.hypot(...q), 1));
  assert.ok(q[1] > 0 && q[3] > 0, `${q}`);
});

test('a sender clock that steps far back starts a new timeline from where the avatar stands', () => {
  // The laptop drives, its clock at 100 s; then the headset does (PROTOCOL
  // §5), its clock 1.5 s behind.
  const b = new PoseBuffer({ tickMs: 200 });
  for (let i = 0; i < 10; i++) b.push(pose(100000 + i * 33, i / 10), 1000 + i * 33);
  const shown = b.sample(1400).head.position[0];
  let taken = 0;
  for (let i = 0; i < 40; i++) if (b.push(pose(98800 + i * 33, 5 + i / 10), 1400 + i * 33)) taken++;
  assert.equal(taken, 40, `${taken} of 40 headset poses taken`);
  assert.equal(b.newest().head.position[0], 8.9);
  // It moves on from where it was shown, not from a jump.
  const b2 = new PoseBuffer({ tickMs: 200 });
  for (let i = 0; i < 10; i++) b2.push(pose(100000 + i * 33, i / 10), 1000 + i * 33);
  b2.push(pose(98800, 5), 1400);
  assert.ok(near(b2.sample(1400).head.position[0], shown), `${b2.sample(1400).head.position[0]} after ${shown}`);
  assert.equal(b2.sample(1650).head.position[0], 5);
  assert.ok(near(b.sample(1400 + 39 * 33 + 250).head.position[0], 8.9));
});

test('a pose a little older than the newest is a reordered one, not a new clock', () => {
  const b = new PoseBuffer({ tickMs: 200 });
  b.push(pose(10000, 1), 0);
  b.push(pose(10200, 2), 200);
  assert.equal(b.push(pose(10000 - 1, 9), 210), false);
  assert.equal(b.push(pose(10200 - 250, 9), 220), false);
  assert.equal(b.push(pose(10200 - 251, 9), 230), true);
  assert.equal(b.newest().head.position[0], 9);
});

// irregular plays a sender moving at 1 m/s along x whose updates come at the
// sender times given, each 20 to 50 ms after it sent them, through a buffer
// drawn every 16 ms; it returns the frames: [local time, x shown].
function irregular(times, opts) {
  const b = new PoseBuffer(opts);
  const arrivals = times.map((t, i) => [t + 20 + ((i * 7) % 4) * 10, t]);
  const frames = [];
  let next = 0;
  for (let now = arrivals[0][0]; now < arrivals.at(-1)[0] + 1000; now += 16) {
    for (; next < arrivals.length && arrivals[next][0] <= now; next++) {
      const [at, t] = arrivals[next];
      b.push(pose(t, t / 1000), at);
    }
    frames.push([now, b.sample(now).head.position[0]]);
  }
  return frames;
}

const span = (from, to, step) => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

test('an avatar whose updates come 200, then 800, then 200 ms apart moves on without jumps', () => {
  // Near, far (every fourth tick of a room with interest management), near.
  const times = [...span(0, 3000, 200), ...span(3800, 9400, 800), ...span(9600, 14000, 200)];
  const frames = irregular(times, { tickMs: 200, maxInterval: 800 });
  let most = 0;
  for (let i = 1; i < frames.length; i++) {
    const step = Math.abs(frames[i][1] - frames[i - 1][1]);
    assert.ok(frames[i][1] >= frames[i - 1][1] - 1e-9, `went back at ${frames[i][0]}`);
    most = Math.max(most, step);
  }
  // 16 mm a frame at the sender's pace; a freeze and a jump to the next far
  // pose would be 800 mm, and a glide over a near delay 50 mm a frame.
  assert.ok(most <= 0.035, `a step of ${most.toFixed(3)} m between frames`);
  // Once its delay has grown, the far avatar moves at every frame, at about
  // the sender's pace, rather than stopping at each update.
  const far = frames.filter(([now]) => now >= 6000 && now < 9400);
  for (let i = 1; i < far.length; i++) {
    const step = far[i][1] - far[i - 1][1];
    assert.ok(step > 0.012 && step < 0.021, `a step of ${step.toFixed(4)} m at ${far[i][0]}`);
  }
  // Near again, it is back to a tick and a margin behind (and 20 ms of the
  // path): x = (now - 20 - 250) / 1000.
  const [now, x] = frames.find(([t]) => t >= 14000);
  assert.ok(Math.abs(x - (now - 270) / 1000) < 0.005, `at ${now}: ${x}`);
});

test('the delay follows the longest of the latest update intervals, at least a tick, and not a pause', () => {
  const b = new PoseBuffer({ tickMs: 200, maxInterval: 800 });
  const delays = [];
  for (const t of [0, 200, 400, 1200, 1400, 1600, 1800, 2000, 7000, 7200]) {
    b.push(pose(t, 0), t + 20);
    delays.push(b.intake.delay);
  }
  assert.deepEqual(delays, [250, 250, 250, 850, 850, 850, 850, 250, 250, 250]);
});
