import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packPoints, packPose, POSE_FLOATS, unpackPoints, unpackPose } from '../src/channel.js';
import { encodeFrame, FrameReader } from '../src/frames.js';
import { NEXT, START } from '../src/jitter.js';
import { decodePose, encodePose } from '../src/pose.js';
import { RemoteRoom } from '../src/remote.js';
import { Session } from '../src/session.js';

const head = (time, x, hands = false) => ({
  time,
  head: { position: [x, 1.6, 0], rotation: [0, 0, 0, 1] },
  left: hands ? { position: [x - 0.2, 1, 0], rotation: [0, 0.6, 0, 0.8] } : null,
  right: null,
});

// fakeRoom is a posecast with one room ticking every tickMs, over a fake
// WebTransport: it answers hello and join (Ada is in the room at slot 1),
// echoes pings, and keeps the pose records it is sent, with when.
function fakeRoom(tickMs) {
  const room = { poses: [], toClient: null };
  room.WebTransport = class {
    constructor() {
      this.ready = Promise.resolve();
      this.closed = new Promise((resolve) => { this.close = () => resolve({}); });
      let control;
      const readable = new ReadableStream({ start: (c) => { control = c; } });
      const send = (m) => control.enqueue(encodeFrame(m));
      const frames = new FrameReader();
      let dg;
      this.datagrams = {
        readable: new ReadableStream({ start: (c) => { dg = c; } }),
        writable: new WritableStream({
          write: (d) => {
            if (d[1] === 1) room.poses.push({ at: performance.now(), pose: decodePose(new DataView(d.buffer, d.byteOffset + 4)) });
            else dg.enqueue(d); // a ping
          },
        }),
      };
      room.toClient = (d) => dg.enqueue(d);
      this.createBidirectionalStream = async () => ({
        readable,
        writable: new WritableStream({
          write: (chunk) => {
            for (const m of frames.push(chunk)) {
              if (m.type === 'hello') send({ type: 'welcome', ref: m.ref, v: 1, session: 's', tick_ms: tickMs, repeat: 3 });
              if (m.type === 'join') {
                send({ type: 'joined', ref: m.ref, room: m.room, user: 'me', slot: 0, tick_ms: tickMs, position: [0, 1.6, 0], rotation: [0, 0, 0, 1], token: 'dev-me' });
                send({
                  type: 'entities_state',
                  seq: 1,
                  entities: {
                    me: { avatar: true, slot: 0, name: 'Me', position: [0, 1.6, 0] },
                    ada: { avatar: true, slot: 1, name: 'Ada', position: [1, 1.6, 0], pose_time: 500 },
                  },
                });
                send({ type: 'presence_state', state: { ada: { metas: [{ phx_ref: 'a1', name: 'Ada' }] } } });
              }
            }
          },
        }),
      });
    }
  };
  return room;
}

// poseUpdate returns the datagram of pose update seq carrying records
// ([slot, pose]) in one part.
function poseUpdate(seq, records) {
  const body = records.map(([slot, pose]) => {
    const r = encodePose(pose);
    return [slot & 0xff, slot >> 8, ...r];
  }).flat();
  const b = new Uint8Array(14 + body.length);
  b.set([0x95, 0x02, 0xce, 0, 0, 0, 0, 0xcc, 0, 0xcc, 1, 0xc5, body.length >> 8, body.length & 0xff]);
  new DataView(b.buffer).setUint32(3, seq);
  b.set(body, 14);
  return b;
}

// start runs a Session against room as the page's worker would, and
// returns it with the messages it posted: each passed through
// structuredClone with its transfer list, as postMessage passes it.
function start(room, opts = {}) {
  const posted = [];
  const session = new Session((m, transfer) => {
    posted.push({ m: structuredClone(m, { transfer }), transfer: transfer || [] });
  }, { WebTransport: room.WebTransport, fetch: async () => ({ ok: true, json: async () => ({ url: 'https://x/wt' }) }), pingEvery: 20 });
  session.handle({ type: 'start', base: 'http://localhost/', join: { room: 'r', device: 'web-1', name: 'Me' }, hz: 0, copies: 1, origin: performance.timeOrigin, ...opts });
  return { session, posted, of: (type) => posted.filter(({ m }) => m.type === type).map(({ m }) => m) };
}

// postPose posts a pose to session as the page does, its buffer transferred.
function postPose(session, pose) {
  const f = packPose(pose);
  session.handle(structuredClone({ type: 'pose', pose: f }, { transfer: [f.buffer] }));
  assert.equal(f.byteLength, 0, 'the pose buffer was not transferred');
}

async function until(what, cond, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('a pose packs into floats and back, hands or none', () => {
  for (const p of [head(123456, 1.25), head(2 ** 32 - 1, -3, true)]) {
    const f = packPose(p);
    assert.equal(f.length, POSE_FLOATS);
    assert.deepEqual(unpackPose(f), p);
  }
});

test('points pack with their avatar ids into one buffer and back', () => {
  const points = [
    ['ada', { kind: START, t: 0, offset: 1020.5, delay: 250, pose: head(1000, 1) }],
    ['bob', { kind: NEXT, t: 800, offset: 31, delay: 850, pose: head(1800, 2, true) }],
  ];
  const m = packPoints(points);
  assert.ok(m.data instanceof Float64Array);
  assert.deepEqual(unpackPoints(structuredClone(m, { transfer: [m.data.buffer] })), points);
});

test('the worker sends the newest pose the page posted once per tick, with no frames in between', async (t) => {
  const room = fakeRoom(50);
  const { session, of } = start(room);
  t.after(() => session.stop());
  await until('connected', () => of('status').some((s) => s.state === 'connected'));
  postPose(session, head(1, 0.5));
  await until('a pose', () => room.poses.length >= 1);
  postPose(session, head(2, 0.7));
  // The page posts nothing more: the worker sends what it holds, a tick
  // apart (before any pose update, the schedule runs at the tick period).
  await new Promise((r) => setTimeout(r, 500));
  const sent = room.poses.slice();
  const ticks = (sent.at(-1).at - sent[0].at) / 50;
  assert.ok(sent.length >= 5 && Math.abs(sent.length - 1 - ticks) <= 1.5, `${sent.length} poses in ${ticks.toFixed(1)} ticks`);
  assert.equal(sent[0].pose.time, 1);
  assert.ok(sent.slice(1).every(({ pose }) => pose.time === 2), 'the newest pose, every time after');
  // Past a second without a pose, the page has stopped drawing: so does the worker.
  await new Promise((r) => setTimeout(r, 1000));
  const stopped = room.poses.length;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(room.poses.length, stopped, 'poses went on a second after the page stopped posting them');
  assert.ok(stopped < 30, `${stopped} poses`);
  postPose(session, head(3, 0.9));
  await until('poses again', () => room.poses.length > stopped);
  const stats = of('stats').at(-1);
  assert.ok(stats.posesSent >= stopped, `stats count ${stats.posesSent} poses of ${stopped}`);
  assert.ok(stats.rtt !== null && stats.minRtt > 0, `round trip ${stats.rtt}`);
});

test('the room and its avatars reach the page, pose updates as points in a transferred buffer', async (t) => {
  const room = fakeRoom(200);
  const { session, posted, of } = start(room);
  t.after(() => session.stop());
  await until('the room state', () => of('room').some((m) => m.presence));
  const [joined] = of('joined');
  assert.equal(joined.msg.token, 'dev-me');
  const state = of('room').find((m) => m.entities);
  assert.equal(state.user, 'me');
  assert.deepEqual(state.entities.map(([id]) => id).sort(), ['ada', 'me']);
  assert.equal(of('room').filter((m) => m.entities).length, 1, 'entities sent again without a change');

  room.toClient(poseUpdate(2, [[1, head(1000, 2)], [0, head(1000, 9)]]));
  await until('points for the update', () => of('points').length >= 2);
  const sent = posted.filter(({ m }) => m.type === 'points');
  assert.ok(sent.every(({ transfer }) => transfer.length === 1), 'points sent without their buffer transferred');
  // The placement from the state, then Ada's first pose; never our own.
  const points = of('points').flatMap(unpackPoints);
  assert.deepEqual(points.map(([id, p]) => [id, p.kind, p.pose.head.position[0]]), [['ada', START, 1], ['ada', START, 2]]);

  // The page plays them out.
  const page = new RemoteRoom();
  for (const { m } of posted) page.receive(m, performance.now());
  const [[id, c, playback]] = [...page.avatars()];
  assert.equal(id, 'ada');
  assert.equal(c.name, 'Ada');
  assert.equal(playback.sample(performance.now()).head.position[0], 2);
  assert.equal(page.status.state, 'connected');
  assert.deepEqual([...page.presence.keys()], ['ada']);
});

test('the page forgets the playback of an avatar that left, and tells who is stale', () => {
  const page = new RemoteRoom();
  const point = { kind: START, t: 0, offset: 0, delay: 250, pose: head(0, 1) };
  page.receive({ type: 'room', room: 'r', user: 'me', slot: 0, tickMs: 200, presence: [['ada', [{ phx_ref: 'a1', stale: true }]]], entities: [['ada', { avatar: true, slot: 1 }], ['bob', { avatar: true, slot: 2 }]] }, 0);
  page.receive({ type: 'points', ...packPoints([['ada', point], ['bob', point]]) }, 0);
  assert.deepEqual([...page.avatars()].map(([id]) => id), ['ada', 'bob']);
  assert.equal(page.isStale('ada'), true);
  assert.equal(page.isStale('bob'), false);
  const version = page.version;
  page.receive({ type: 'room', room: 'r', user: 'me', slot: 0, tickMs: 200, presence: null }, 0);
  assert.equal(page.version, version, 'a state without entities changed them');
  page.receive({ type: 'room', room: 'r', user: 'me', slot: 0, tickMs: 200, presence: null, entities: [['ada', { avatar: true, slot: 1 }]] }, 0);
  assert.deepEqual([...page.avatars()].map(([id]) => id), ['ada']);
  assert.equal(page.playbacks.has('bob'), false);
});

test('the worker has a way with every type the server sends, and only those', async () => {
  const { readFile } = await import('node:fs/promises');
  const table = JSON.parse(await readFile(new URL('./message-types.json', import.meta.url), 'utf8'));
  const { SERVER_MESSAGES } = await import('../src/session.js');
  assert.deepEqual(Object.keys(SERVER_MESSAGES).sort(), table.server);
});
