// The page in a real browser: Debian's headless Chromium, driven by
// playwright-core, against a posecast started here on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { startPosecast, startRelay } from './posecast.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = new URL('../test-results/', import.meta.url);

// Chromium needs no flags of ours for WebTransport: playwright's defaults
// (--headless, --no-sandbox as root, --enable-unsafe-swiftshader for WebGL
// without a GPU, no background throttling of timers or renderers) are
// enough. host-resolver-rules gives a name that is not localhost, as a
// headset on the LAN has, to test the page over HTTPS.
const ARGS = ['--host-resolver-rules=MAP lan.test 127.0.0.1'];

let server;
let browser;

before(async () => {
  const index = await readFile(new URL('../dist/index.html', import.meta.url), 'utf8').catch(() => '');
  assert.match(index, /app\.js/, 'web/dist holds no built page: run make web');
  // The default timings: a page that loses the network must be back within
  // the default reconnect grace, and one that closes is gone after it.
  server = await startPosecast([]);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
});

after(async () => {
  await browser?.close();
  const code = await server?.stop();
  assert.equal(code, 0, 'posecast did not shut down cleanly');
});

// open loads the page in a context of its own (its own user) and returns it.
async function open(url, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 800, height: 500 }, ...opts });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await page.goto(url);
  return page;
}

const state = (page) => page.evaluate(() => window.posecast.state());

// until polls page's state until check returns true for it.
async function until(page, what, check, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let s;
  for (;;) {
    s = await state(page);
    if (check(s)) return s;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; state: ${JSON.stringify(s, null, 1)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const distance = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);

// who lists a state's presence as user -> "name × devices", by user.
const who = (s) => Object.fromEntries(Object.entries(s.presence).sort(([a], [b]) => (a < b ? -1 : 1)).map(([user, p]) => [user, `${p.name} × ${p.devices}`]));

// walk holds key down on page until its camera has gone metres.
async function walk(page, key, metres) {
  const from = (await state(page)).self.position;
  await page.keyboard.down(key);
  await until(page, `${key} to walk ${metres} m`, (s) => distance(s.self.position, from) >= metres);
  await page.keyboard.up(key);
}

// turnTowards drags the mouse on page until its camera faces target.
async function turnTowards(page, target) {
  const s = await state(page);
  const [x, y, z, w] = s.self.rotation;
  const yaw = Math.atan2(2 * (w * y + x * z), 1 - 2 * (y * y + x * x));
  const want = Math.atan2(-(target[0] - s.self.position[0]), -(target[2] - s.self.position[2]));
  const turn = Math.atan2(Math.sin(want - yaw), Math.cos(want - yaw));
  // The page turns 0.005 rad a pixel; drag in strokes that stay in the viewport.
  for (let dx = Math.round(-turn / 0.005); dx !== 0;) {
    const stroke = Math.max(-300, Math.min(300, dx));
    await page.mouse.move(400, 250);
    await page.mouse.down();
    await page.mouse.move(400 + stroke, 250, { steps: 10 });
    await page.mouse.up();
    dx -= stroke;
  }
}

test('two pages in a room see each other move, and leave', async () => {
  const a = await open(`${server.http}/?room=e2e&name=Ada`);
  const b = await open(`${server.http}/?room=e2e&name=Bob`);
  const sa = await until(a, 'A to join', (s) => s.connected && s.room === 'e2e' && s.self.slot >= 0);
  const sb = await until(b, 'B to join', (s) => s.connected && s.room === 'e2e' && s.self.slot >= 0);
  const idA = sa.self.id;
  const idB = sb.self.id;
  assert.notEqual(idA, idB);

  // Each sees the other, and both list the same people.
  await until(a, 'A to see B', (s) => s.avatars[idB]?.name === 'Bob');
  await until(b, 'B to see A', (s) => s.avatars[idA]?.name === 'Ada');
  const listed = await until(b, 'B to list both', (s) => s.presence[idA] && s.presence[idB]);
  assert.deepEqual(who(listed), { [idA]: 'Ada × 1', [idB]: 'Bob × 1' });
  await until(a, 'A to list what B lists', (s) => JSON.stringify(who(s)) === JSON.stringify(who(listed)));
  assert.ok(sb.entities >= 5, `B holds ${sb.entities} entities: a spawn point, obstacles and avatars`);
  assert.ok(sb.tickMs === 200, `tick ${sb.tickMs}`);

  // A walks: forward, then to the right.
  const start = (await state(a)).self.position;
  await walk(a, 'KeyW', 1);
  await walk(a, 'KeyD', 0.5);
  const moved = (await state(a)).self.position;
  assert.ok(distance(start, moved) > 1, `A moved only from ${start} to ${moved}`);

  // B's avatar for A ends up where A is, to the millimetre of the wire.
  const seen = await until(b, "B's avatar for A to reach A", (s) => s.avatars[idA] && distance(s.avatars[idA].position, moved) < 0.002);
  assert.ok(seen.updateRate > 0, 'B counted no pose updates');
  assert.ok(seen.rtt !== null && seen.rtt > 0, `B measured no round trip: ${seen.rtt}`);

  // A picture of A's avatar as B sees it.
  await turnTowards(b, moved);
  await b.waitForTimeout(300);
  await mkdir(artifacts, { recursive: true });
  const shot = new URL('room-as-b-sees-it.png', artifacts);
  await b.screenshot({ path: shot.pathname });
  console.log(`screenshot: ${shot.pathname}`);

  // A closes its page: B's avatar for A goes, and so does A from presence.
  await a.context().close();
  await until(b, 'A to leave B\'s room', (s) => !s.avatars[idA] && !s.presence[idA], 25000);
  await b.context().close();
});

// paced walks a page in a room of srv for about `seconds` and checks it
// sends about one pose per tick of tickMs, in step with the tick, while a
// second page sees it walk. It returns what it saw.
async function paced(srv, room, tickMs, seconds) {
  // The page sends on its animation frames, and software WebGL on a small
  // machine draws 800 × 500 at a few frames a second: fewer than the
  // ticks. A small page draws at 60.
  const small = { viewport: { width: 200, height: 125 } };
  const a = await open(`${srv.http}/?room=${room}&name=Pat`, small);
  const b = await open(`${srv.http}/?room=${room}&name=Quinn`, small);
  const idA = (await until(a, 'A to join', (s) => s.connected && s.room === room && s.self.slot >= 0)).self.id;
  await until(b, 'B to see A', (s) => s.avatars[idA]);
  // Ticks for the phase, and the page past its first frames and pings,
  // slow while it starts.
  await a.waitForTimeout(2000);
  await a.keyboard.down('KeyW');
  const from = await state(a);
  const fromAt = Date.now();
  const seenFrom = (await state(b)).avatars[idA].position;
  await a.waitForTimeout(seconds * 1000);
  const to = await state(a);
  const toAt = Date.now();
  await a.keyboard.up('KeyW');
  assert.equal(to.schedule, 'tick');
  assert.equal(to.tickMs, tickMs);
  const perTick = (to.posesSent - from.posesSent) / ((toAt - fromAt) / tickMs);
  assert.ok(perTick >= 0.6 && perTick <= 1.1, `${perTick.toFixed(2)} poses per ${tickMs} ms tick`);
  assert.ok(to.margin >= 0.5 && to.margin <= tickMs / 2, `margin ${to.margin} ms`);
  // B sees A walk, and end where A stopped.
  const stopped = (await state(a)).self.position;
  const seen = await until(b, "B's avatar for A to reach A", (s) => s.avatars[idA] && distance(s.avatars[idA].position, stopped) < 0.002);
  assert.ok(distance(seenFrom, seen.avatars[idA].position) > 1, `B saw A go only from ${seenFrom} to ${seen.avatars[idA].position}`);
  console.log(`tick ${tickMs} ms: ${perTick.toFixed(2)} poses a tick over ${((toAt - fromAt) / 1000).toFixed(1)} s, margin ${to.margin.toFixed(2)} ms, least rtt ${to.minRtt.toFixed(2)} ms`);
  await a.context().close();
  await b.context().close();
}

test('a page sends one pose per tick of its room, at the default tick and at 50 ms', async () => {
  await paced(server, 'e2e-pace', 200, 5);
  const fast = await startPosecast(['--tick', '50ms']);
  let code;
  try {
    await paced(fast, 'e2e-pace', 50, 3);
  } finally {
    code = await fast.stop();
  }
  assert.equal(code, 0, 'the 50 ms posecast did not shut down cleanly');
});

test("a page opened with another page's link is the same user on a second device", async () => {
  const a = await open(`${server.http}/?room=e2e-devices&name=Ada`);
  const sa = await until(a, 'A to join', (s) => s.connected && s.self.slot >= 0);
  const link = await a.locator('#same-user').getAttribute('href');
  assert.ok(link && new URL(link).searchParams.get('token'), `no link with a token: ${link}`);
  const second = await open(link);
  const s2 = await until(second, 'the second device to join', (s) => s.connected && s.self.slot >= 0);
  assert.equal(s2.self.id, sa.self.id, 'the second device is another user');
  await until(a, 'A listed with two devices', (s) => s.presence[sa.self.id]?.devices === 2);
  await second.context().close();
  await until(a, 'A back to one device', (s) => s.presence[sa.self.id]?.devices === 1, 25000);
  await a.context().close();
});

test('the lobby lists the rooms and joins the one picked, with the name given', async () => {
  const r = await fetch(`${server.http}/api/rooms`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'Gallery' }) });
  assert.equal(r.status, 201);
  const { id } = await r.json();
  const page = await open(`${server.http}/`);
  await page.fill('#name', 'Flo');
  await page.getByText('Gallery').click();
  const s = await until(page, 'the page to join the room picked', (s) => s.connected && s.room === id);
  assert.equal(s.presence[s.self.id]?.name, 'Flo');
  assert.equal(new URL(page.url()).searchParams.get('room'), id);
  await page.context().close();
});

test('a page that loses the network comes back as the same avatar, and no one sees it leave', async () => {
  const relay = await startRelay(new URL(server.webtransport).host);
  try {
    const c = await open(`${server.http}/?room=e2e-net&name=Cy&wt=https://127.0.0.1:${relay.port}/wt`);
    const d = await open(`${server.http}/?room=e2e-net&name=Di`);
    const idC = (await until(c, 'C to join', (s) => s.connected && s.self.slot >= 0)).self.id;
    await until(d, 'D to see C', (s) => s.avatars[idC] && s.presence[idC]);

    // D watches C throughout.
    let watching = true;
    let absences = 0;
    const watcher = (async () => {
      while (watching) {
        const s = await state(d);
        if (!s.avatars[idC] || !s.presence[idC]) absences++;
        await d.waitForTimeout(100);
      }
    })();

    relay.block(true);
    await until(c, 'C to notice its session is gone', (s) => !s.connected);
    relay.block(false);
    const back = await until(c, 'C to be back', (s) => s.connected && s.sessions >= 2);
    assert.equal(back.self.id, idC);

    // Its poses flow again.
    await walk(c, 'KeyS', 0.5);
    const moved = (await state(c)).self.position;
    await until(d, "D's avatar for C to follow", (s) => s.avatars[idC] && distance(s.avatars[idC].position, moved) < 0.002);
    watching = false;
    await watcher;
    assert.equal(absences, 0, 'D saw C leave while C was reconnecting');
    await c.context().close();
    await d.context().close();
  } finally {
    relay.close();
  }
});

test('a page on a LAN name needs HTTPS, and works over it', async () => {
  const port = new URL(server.http).port;
  const insecure = await open(`http://lan.test:${port}/?room=e2e-lan&name=Eve`);
  assert.equal(await insecure.evaluate(() => isSecureContext), false);
  assert.match(await insecure.textContent('#problem'), /secure page/);
  await insecure.context().close();

  // As a headset does once its person accepted the self-signed certificate.
  const secure = await open(`https://lan.test:${port}/?room=e2e-lan&name=Eve`, { ignoreHTTPSErrors: true });
  const s = await until(secure, 'the HTTPS page to join', (s) => s.connected && s.self.slot >= 0);
  assert.match(s.url, /^https:\/\/lan\.test:\d+\/wt$/);
  assert.equal(s.presence[s.self.id]?.name, 'Eve');
  await secure.context().close();
});

// metrics returns the posecast_ figures of srv's /metrics without labels.
async function metrics(srv) {
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    const [, name, value] = line.match(/^posecast_(\w+) (\S+)$/) || [];
    if (name) m[name] = Number(value);
  }
  return m;
}

// busyFrames makes every animation frame of page take 30 ms more of its
// main thread, as a headset's renderer might.
const busyFrames = (page) => page.evaluate(() => {
  const spin = () => {
    const end = performance.now() + 30;
    while (performance.now() < end);
    requestAnimationFrame(spin);
  };
  requestAnimationFrame(spin);
});

test('a page whose main thread is busy 30 ms of every frame keeps its pose schedule and its round trip', async () => {
  // A server of its own, whose one room is this page's: its ticks are the
  // room's, and every pose it takes is the page's. Its ticks are 50 ms
  // apart, about as many a second as a busy page draws frames on a small
  // machine: a page that sent its poses from its frames kept to them only
  // in bursts (1.26 poses a tick) and showed a round trip of 40 ms.
  const tickMs = 50;
  const srv = await startPosecast(['--tick', `${tickMs}ms`]);
  let code;
  try {
    const small = { viewport: { width: 200, height: 125 } };
    const a = await open(`${srv.http}/?room=e2e-busy&name=Bea`, small);
    await until(a, 'A to join', (s) => s.connected && s.self.slot >= 0);
    await a.waitForTimeout(2000); // ticks for the phase, and the page past its start
    assert.equal((await state(a)).tickMs, tickMs);
    // run counts the poses the server takes a tick and samples the round
    // trip the page shows, for about seconds.
    const run = async (seconds) => {
      const from = await metrics(srv);
      const rtts = [];
      for (let i = 0; i < seconds * 4; i++) {
        await a.waitForTimeout(250);
        rtts.push((await state(a)).rtt);
      }
      const to = await metrics(srv);
      assert.equal(to.rooms, 1);
      const ticks = to.tick_seconds_count - from.tick_seconds_count;
      rtts.sort((x, y) => x - y);
      return { ticks, perTick: (to.poses_in_total - from.poses_in_total) / ticks, rtt: rtts[rtts.length >> 1] };
    };
    await a.keyboard.down('KeyW');
    const free = await run(3);
    await busyFrames(a);
    const fps = await a.evaluate(() => new Promise((resolve) => {
      let n = 0;
      const count = () => n++ < 10 ? requestAnimationFrame(count) : resolve(10000 / (performance.now() - t0));
      const t0 = performance.now();
      requestAnimationFrame(count);
    }));
    const busy = await run(3);
    await a.keyboard.up('KeyW');
    console.log(`free: ${free.perTick.toFixed(2)} poses a tick over ${free.ticks} ticks, median rtt ${free.rtt.toFixed(1)} ms; ` +
      `busy (${fps.toFixed(0)} frames a second): ${busy.perTick.toFixed(2)} poses a tick over ${busy.ticks} ticks, median rtt ${busy.rtt.toFixed(1)} ms`);
    for (const [name, r] of [['free', free], ['busy', busy]]) {
      assert.ok(r.ticks >= 50, `${name}: ${r.ticks} ticks`);
      assert.ok(r.perTick >= 0.85 && r.perTick <= 1.15, `${name}: ${r.perTick.toFixed(2)} poses a tick`);
      assert.ok(r.rtt !== null && r.rtt < tickMs, `${name}: median round trip ${r.rtt} ms, a tick or more`);
    }
    assert.ok(busy.rtt <= free.rtt + tickMs / 2, `median round trip ${busy.rtt} ms busy, ${free.rtt} ms free`);
    await a.context().close();
  } finally {
    code = await srv.stop();
  }
  assert.equal(code, 0, 'the posecast of the busy page did not shut down cleanly');
});

test('an avatar far away comes every few ticks, and is shown a little further in the past, moving without jumps', async () => {
  // Interest management in which an avatar 2 m away is far, unless it is
  // the nearest.
  const srv = await startPosecast(['--interest-radius', '2', '--interest-nearest', '1', '--interest-cell', '1', '--interest-far-every', '4']);
  let code;
  try {
    const small = { viewport: { width: 200, height: 125 } };
    const a = await open(`${srv.http}/?room=e2e-far&name=Ann`, small);
    const b = await open(`${srv.http}/?room=e2e-far&name=Ben`, small);
    const c = await open(`${srv.http}/?room=e2e-far&name=Cal`, small);
    const idB = (await until(b, 'B to join', (s) => s.connected && s.self.slot >= 0)).self.id;
    const idC = (await until(c, 'C to join', (s) => s.connected && s.self.slot >= 0)).self.id;
    // A tick and a margin behind, a few milliseconds more for the pacing.
    await until(a, 'A to see B and C, near', (s) => s.avatars[idB]?.delay < 300 && s.avatars[idC]?.delay < 300);
    // C walks away; once B is nearer A and C more than 2 m off, A gets C
    // every fourth tick.
    await c.keyboard.down('KeyS');
    await until(a, 'A to play C as far', (s) => s.avatars[idC]?.delay >= 4 * 200 + 50, 20000);
    // A's view of C, at each of A's frames for 3 s.
    const track = await a.evaluate(async (id) => {
      const out = [];
      const end = performance.now() + 3000;
      while (performance.now() < end) {
        await new Promise(requestAnimationFrame);
        const p = window.posecast.state().avatars[id].position;
        out.push([performance.now(), p[0], p[2]]);
      }
      return out;
    }, idC);
    await c.keyboard.up('KeyS');
    let fastest = 0;
    for (let i = 1; i < track.length; i++) {
      const [t0, x0, z0] = track[i - 1];
      const [t1, x1, z1] = track[i];
      fastest = Math.max(fastest, Math.hypot(x1 - x0, z1 - z0) / ((t1 - t0) / 1000));
    }
    const [, x0, z0] = track[0];
    const [, x1, z1] = track.at(-1);
    const went = Math.hypot(x1 - x0, z1 - z0);
    console.log(`far: C went ${went.toFixed(2)} m in A's view over ${track.length} frames, ${fastest.toFixed(2)} m/s at the fastest`);
    // C walks 2 m/s (less when its frames are slow); a jump to each far
    // update, 0.8 s of walking, would be 1.6 m in a frame.
    assert.ok(went > 2, `C went only ${went.toFixed(2)} m in A's view`);
    assert.ok(fastest < 6, `C went ${fastest.toFixed(2)} m/s in A's view`);
    await a.context().close();
    await b.context().close();
    await c.context().close();
  } finally {
    code = await srv.stop();
  }
  assert.equal(code, 0, 'the posecast with interest management did not shut down cleanly');
});
