import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../src/connection.js';
import { encodeFrame, FrameReader } from '../src/frames.js';

const HASH = { hex: 'ab', base64: btoa('0123456789abcdef0123456789abcdef') };
const CERT_HASH = { url: 'https://127.0.0.1:4433/wt', alternates: ['https://192.0.2.1:4433/wt'], current: HASH };

// node returns the location of cluster node n, as a moved carries it.
const node = (n) => ({
  node: `node-${n}`,
  url: `https://10.0.0.${n}:4433/wt`,
  current: { hex: 'cd', base64: btoa(`current certificate of node ${n}`) },
  next: { hex: 'ef', base64: btoa(`next certificate of node ${n}`) },
});

// bytes returns the hashes a session was opened with, as the text they encode.
const bytes = (hashes) => hashes.map((h) => new TextDecoder().decode(h.value));

// fakeServer answers hello and join as posecast does, over fake
// WebTransport sessions that a test can drop; unready lists URLs whose
// sessions never become ready; refuseHello says goodbye to a hello with
// that code, refuseJoin answers a join with that error, refuseResync
// answers a resync with that error, and moved maps URLs to the location a
// join there is refused with as moved (the room lives elsewhere). All the
// URLs are one server's: a token works on every one.
function fakeServer({ unready = [], refuseHello = null, refuseJoin = null, refuseResync = null, moved = {} } = {}) {
  const server = { sessions: [], hellos: 0, joins: [], resyncs: [], urls: [], hashes: [], opened: [], tokens: new Map() };
  server.WebTransport = class {
    constructor(url, opts) {
      server.urls.push(url);
      server.hashes.push(opts.serverCertificateHashes);
      server.opened.push(Date.now());
      let closeSession;
      this.closed = new Promise((resolve) => { closeSession = resolve; });
      this.ready = unready.includes(url) ? new Promise(() => {}) : Promise.resolve();
      let toClient;
      const control = new ReadableStream({ start: (c) => { toClient = c; } });
      const send = (m) => toClient.enqueue(encodeFrame(m));
      const frames = new FrameReader();
      let dgClient;
      this.datagrams = {
        readable: new ReadableStream({ start: (c) => { dgClient = c; } }),
        writable: new WritableStream({ write: (d) => dgClient.enqueue(d) }), // every datagram echoed, as pings are
      };
      this.goodbye = (code, message, where) => send({ type: 'goodbye', code, message, moved: where });
      this.closed.then(() => { this.ended = true; });
      this.close = () => {
        try {
          toClient.close();
          dgClient.close();
        } catch {
          // closed already
        }
        closeSession({});
      };
      this.createBidirectionalStream = async () => ({
        readable: control,
        writable: new WritableStream({
          write: (chunk) => {
            for (const m of frames.push(chunk)) {
              if (m.type === 'hello') {
                server.hellos++;
                if (refuseHello) {
                  send({ type: 'goodbye', code: refuseHello, message: 'no' });
                  this.close();
                  continue;
                }
                send({ type: 'welcome', ref: m.ref, v: 1, session: 's', tick_ms: 200, repeat: 3 });
              }
              if (m.type === 'resync') {
                server.resyncs.push(m);
                if (refuseResync) send({ type: 'error', ref: m.ref, code: refuseResync, message: 'no' });
                else send({ type: 'entities_state', seq: 0, entities: {} });
              }
              if (m.type === 'join') {
                server.joins.push(m);
                if (moved[url]) {
                  send({ type: 'error', ref: m.ref, code: 'moved', message: 'the room lives elsewhere', moved: moved[url] });
                  continue;
                }
                if (refuseJoin) {
                  send({ type: 'error', ref: m.ref, code: refuseJoin, message: 'no' });
                  continue;
                }
                // Like a server in development mode: a token it knows names
                // the user, anything else is a new user, and every joined
                // carries a fresh token.
                const known = server.tokens.get(m.token);
                const user = known || `u-${server.joins.length}`;
                const token = `dev-${user}-${server.joins.length}`;
                server.tokens.set(token, user);
                send({ type: 'joined', ref: m.ref, room: m.room, user, slot: 0, resumed: !!known, token });
                send({ type: 'entities_state', seq: 0, entities: {} });
                send({ type: 'presence_state', state: {} });
              }
            }
          },
        }),
      });
      server.sessions.push(this);
    }
  };
  return server;
}

// connect runs a Connection to server; fetched lists the URLs it asked.
function connect(server, opts = {}) {
  const messages = [];
  const states = [];
  const fetched = [];
  const conn = new Connection({
    base: 'http://localhost:8080/?room=r',
    join: { room: 'r', device: 'web-1', name: 'Ada' },
    fetch: async (url) => {
      fetched.push(String(url));
      return { ok: true, json: async () => CERT_HASH };
    },
    WebTransport: server.WebTransport,
    backoffMin: 5,
    backoffMax: 20,
    connectTimeout: 50,
    pingEvery: 10,
    onMessage: (m) => messages.push(m),
    onState: () => states.push(conn.state),
    ...opts,
  });
  const running = conn.run();
  return { conn, messages, states, fetched, running };
}

async function until(what, cond, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('it says hello, joins with the certificate hash, and hands on what the room sends', async () => {
  const server = fakeServer();
  const { conn, messages, states, running } = connect(server, { join: { room: 'r', device: 'web-1', name: 'Ada', token: 'pc1.x' } });
  await until('connected', () => conn.state === 'connected');
  assert.deepEqual(states.slice(0, 2), ['connecting', 'connected']);
  const [hashes] = server.hashes;
  assert.equal(hashes[0].algorithm, 'sha-256');
  assert.equal(new TextDecoder().decode(hashes[0].value), '0123456789abcdef0123456789abcdef');
  const { ref, ...join } = server.joins[0];
  assert.ok(ref > 0);
  assert.deepEqual(join, { type: 'join', room: 'r', device: 'web-1', name: 'Ada', token: 'pc1.x' });
  await until('the room state', () => messages.some((m) => m.type === 'presence_state'));
  assert.deepEqual(messages.map((m) => m.type), ['welcome', 'joined', 'entities_state', 'presence_state']);
  await until('a round trip', () => conn.rtt !== null);
  assert.ok(conn.minRtt > 0 && conn.minRtt <= conn.rtt, `least round trip ${conn.minRtt}, latest ${conn.rtt}`);
  conn.stop();
  await running;
  assert.equal(conn.state, 'closed');
});

test('a dropped session comes back as the same user and device', async () => {
  const server = fakeServer();
  const { conn, states, messages, running } = connect(server);
  await until('connected', () => conn.state === 'connected');
  server.sessions[0].close();
  await until('a second session', () => conn.sessions === 2 && conn.state === 'connected');
  assert.ok(states.includes('reconnecting'));
  assert.equal(server.joins.length, 2);
  assert.equal(server.joins[0].token, undefined);
  assert.equal(server.joins[1].token, 'dev-u-1-1', 'the second join presents the token the first joined reply handed out');
  assert.equal(server.joins[1].device, server.joins[0].device);
  const joined = messages.filter((m) => m.type === 'joined');
  assert.deepEqual(joined.map((m) => [m.user, m.resumed]), [['u-1', false], ['u-1', true]]);
  conn.stop();
  await running;
});

test('a token the server no longer takes is replaced by the one it hands back', async () => {
  const server = fakeServer();
  const { conn, messages, running } = connect(server, { join: { room: 'r', device: 'web-1', name: 'Ada', token: 'from-before-a-restart' } });
  await until('connected', () => conn.state === 'connected');
  server.sessions[0].close();
  await until('a second session', () => conn.sessions === 2 && conn.state === 'connected');
  assert.deepEqual(server.joins.map((j) => j.token), ['from-before-a-restart', 'dev-u-1-1']);
  const joined = messages.filter((m) => m.type === 'joined');
  assert.deepEqual(joined.map((m) => m.user), ['u-1', 'u-1']);
  conn.stop();
  await running;
});

test('a goodbye closes the session, says why, and the page comes back', async () => {
  const server = fakeServer();
  const { conn, running } = connect(server, { backoffMin: 200, backoffMax: 200 });
  await until('connected', () => conn.state === 'connected');
  server.sessions[0].goodbye('server_shutdown', 'server is stopping');
  await until('the goodbye to be told', () => conn.state === 'reconnecting');
  assert.equal(conn.detail, 'server_shutdown: server is stopping');
  await until('a second session', () => conn.sessions === 2);
  conn.stop();
  await running;
});

test('a goodbye replaced, its device taken over by another session, is not followed by a reconnect', async () => {
  const server = fakeServer();
  const { conn, running } = connect(server, { backoffMin: 50, backoffMax: 50 });
  await until('connected', () => conn.state === 'connected');
  server.sessions[0].goodbye('replaced', 'device "d" joined again on another session');
  await running;
  assert.equal(conn.state, 'failed');
  assert.equal(conn.detail, 'replaced: device "d" joined again on another session');
  assert.equal(conn.sessions, 1);
});

test('it keeps trying with backoff while the server cannot be reached', async () => {
  const server = fakeServer({ unready: [CERT_HASH.url, ...CERT_HASH.alternates] });
  const { conn, running } = connect(server);
  await until('three tries', () => server.urls.length >= 6);
  assert.deepEqual(server.urls.slice(0, 2), [CERT_HASH.url, CERT_HASH.alternates[0]]);
  assert.equal(conn.state === 'connecting' || conn.state === 'reconnecting', true);
  assert.match(conn.detail, /no answer/);
  conn.stop();
  await running;
});

test('the alternates are tried when the URL does not answer, and wt overrides both', async () => {
  const server = fakeServer({ unready: [CERT_HASH.url] });
  const a = connect(server);
  await until('connected', () => a.conn.state === 'connected');
  assert.equal(a.conn.url, CERT_HASH.alternates[0]);
  a.conn.stop();
  await a.running;
  const b = connect(server, { wtURL: 'https://127.0.0.1:9999/wt' });
  await until('connected', () => b.conn.state === 'connected');
  assert.equal(b.conn.url, 'https://127.0.0.1:9999/wt');
  b.conn.stop();
  await b.running;
});

test('a join that cannot succeed is not tried again', async () => {
  for (const code of ['invalid', 'forbidden', 'room_full', 'unauthorized']) {
    const server = fakeServer({ refuseJoin: code });
    const { conn, running } = connect(server);
    await running;
    assert.equal(conn.state, 'failed');
    assert.equal(conn.detail, `${code}: no`);
    assert.equal(server.joins.length, 1);
  }
});

test('a hello the server does not speak is not tried again', async () => {
  const server = fakeServer({ refuseHello: 'unsupported' });
  const { conn, running } = connect(server);
  await running;
  assert.equal(conn.state, 'failed');
  assert.equal(conn.detail, 'unsupported: no');
  assert.equal(server.hellos, 1);
  assert.equal(server.joins.length, 0);
});

test('a refusal that another try may not get is tried again', async () => {
  const server = fakeServer({ refuseJoin: 'unavailable' });
  const { conn, running } = connect(server);
  await until('a second join', () => server.joins.length >= 2);
  assert.equal(conn.detail, 'unavailable: no');
  conn.stop();
  await running;
  assert.equal(conn.state, 'closed');
});

test('a request sent with ask carries a ref that its refusal answers', async () => {
  const server = fakeServer({ refuseResync: 'rate_limited' });
  const { conn, messages, running } = connect(server);
  await until('connected', () => conn.state === 'connected');
  const ref = conn.ask({ type: 'resync' });
  assert.ok(ref > 0);
  await until('the refusal', () => messages.some((m) => m.type === 'error'));
  assert.equal(server.resyncs[0].ref, ref);
  assert.deepEqual(messages.at(-1), { type: 'error', ref, code: 'rate_limited', message: 'no' });
  assert.equal(conn.waiters.size, 0);
  conn.stop();
  await running;
});

test('it asks /cert-hash for the node of its room', async () => {
  const server = fakeServer();
  const { conn, fetched, running } = connect(server, { join: { room: 'team:a@b', device: 'web-1', name: 'Ada' } });
  await until('connected', () => conn.state === 'connected');
  assert.deepEqual(fetched, ['http://localhost:8080/cert-hash?room=team%3Aa%40b']);
  conn.stop();
  await running;
});

test('with a token it asks /cert-hash to hold its room', async () => {
  const server = fakeServer();
  const { conn, fetched, running } = connect(server, { join: { room: 'lobby', device: 'web-1', name: 'Ada', token: 'pc1.x.y' } });
  await until('connected', () => conn.state === 'connected');
  assert.deepEqual(fetched, ['http://localhost:8080/cert-hash?room=lobby&token=pc1.x.y']);
  conn.stop();
  await running;
});

test('a server that cannot place the room says why', async () => {
  const server = fakeServer();
  const { conn, running } = connect(server, {
    fetch: async () => ({ ok: false, status: 503, json: async () => ({ error: 'no node has room for it' }) }),
  });
  await until('the reason', () => conn.detail === 'GET /cert-hash: 503 no node has room for it');
  assert.equal(server.urls.length, 0);
  conn.stop();
  await running;
});

// A backoff this long would fail the tests of moves that must be followed at
// once: until gives up after 2 s.
const NO_WAITING = { backoffMin: 5000, backoffMax: 5000 };

test('a join refused as moved is made again at once where the room lives', async () => {
  // No node name this time: the status names the host.
  const where = { ...node(2) };
  delete where.node;
  const server = fakeServer({ moved: { [CERT_HASH.url]: where } });
  const join = { room: 'r', device: 'web-1', name: 'Ada', token: 'pc1.x' };
  const { conn, states, fetched, running } = connect(server, { ...NO_WAITING, join });
  await until('connected', () => conn.state === 'connected');
  assert.deepEqual(server.urls, [CERT_HASH.url, node(2).url]);
  assert.deepEqual(bytes(server.hashes[1]), ['current certificate of node 2', 'next certificate of node 2']);
  assert.ok(server.sessions[0].ended, 'the refused session is closed');
  const [first, second] = server.joins.map(({ ref, ...j }) => j);
  assert.deepEqual(second, first);
  assert.deepEqual(second, { type: 'join', room: 'r', device: 'web-1', name: 'Ada', token: 'pc1.x' });
  assert.equal(fetched.length, 1, 'the move is followed without asking /cert-hash again');
  assert.ok(!states.includes('failed'));
  assert.equal(conn.url, node(2).url);
  assert.equal(conn.detail, 'moved to 10.0.0.2:4433');
  conn.stop();
  await running;
});

test('a goodbye moved reconnects at once where the room went, as the same user and device, every time', async () => {
  const server = fakeServer();
  const { conn, states, messages, fetched, running } = connect(server, { ...NO_WAITING, wtURL: 'https://127.0.0.1:9999/wt' });
  await until('connected', () => conn.state === 'connected');
  // More moves than are followed in a row: each join starts the count again.
  for (let n = 1; n <= 4; n++) {
    server.sessions.at(-1).goodbye('moved', 'the room moved', node(n));
    await until(`session ${n + 1}`, () => conn.sessions === n + 1 && conn.state === 'connected');
  }
  assert.ok(states.includes('reconnecting'));
  assert.deepEqual(server.urls, ['https://127.0.0.1:9999/wt', node(1).url, node(2).url, node(3).url, node(4).url], 'wt names the first node, not where a move goes');
  assert.deepEqual(bytes(server.hashes[4]), ['current certificate of node 4', 'next certificate of node 4']);
  assert.equal(fetched.length, 1);
  assert.deepEqual(server.joins.map((j) => j.device), Array(5).fill('web-1'));
  assert.deepEqual(server.joins.map((j) => j.token), [undefined, 'dev-u-1-1', 'dev-u-1-2', 'dev-u-1-3', 'dev-u-1-4']);
  const joined = messages.filter((m) => m.type === 'joined');
  assert.deepEqual(joined.map((m) => [m.user, m.resumed]), [['u-1', false], ...Array(4).fill(['u-1', true])]);
  assert.equal(conn.detail, 'moved to node-4');
  conn.stop();
  await running;
});

test('past three moves in a row it waits its backoff and asks /cert-hash again', async () => {
  // Every node says the room is on the next one.
  const moved = { [CERT_HASH.url]: node(1) };
  for (let n = 1; n < 9; n++) moved[node(n).url] = node(n + 1);
  const server = fakeServer({ moved });
  const { conn, states, fetched, running } = connect(server, { backoffMin: 300, backoffMax: 300 });
  await until('a second round', () => server.urls.length === 5);
  assert.deepEqual(server.urls, [CERT_HASH.url, node(1).url, node(2).url, node(3).url, CERT_HASH.url]);
  assert.equal(fetched.length, 2);
  assert.equal(fetched[1], 'http://localhost:8080/cert-hash?room=r');
  const gaps = server.opened.slice(1).map((t, i) => t - server.opened[i]);
  assert.ok(gaps.slice(0, 3).every((g) => g < 150), `the moves waited: ${gaps}`);
  assert.ok(gaps[3] >= 140, `no backoff after the fourth move: ${gaps}`);
  assert.ok(!states.includes('failed'));
  assert.match(conn.detail, /^moved: /);
  conn.stop();
  await running;
});

test('a moved without a URL to go to waits its backoff and asks /cert-hash again', async () => {
  for (const where of [{ node: 'node-4' }, { node: 'node-4', url: 'http://10.0.0.4:8080/' }]) {
    const server = fakeServer({ moved: { [CERT_HASH.url]: where } });
    const { conn, fetched, running } = connect(server, { backoffMin: 300, backoffMax: 300 });
    await until('a second try', () => server.urls.length === 2);
    assert.deepEqual(server.urls, [CERT_HASH.url, CERT_HASH.url]);
    assert.equal(fetched.length, 2);
    assert.ok(server.opened[1] - server.opened[0] >= 140, 'no backoff');
    conn.stop();
    await running;
  }
});
