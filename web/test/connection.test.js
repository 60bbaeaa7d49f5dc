import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../src/connection.js';
import { encodeFrame, FrameReader } from '../src/frames.js';

const HASH = { hex: 'ab', base64: btoa('0123456789abcdef0123456789abcdef') };
const CERT_HASH = { url: 'https://127.0.0.1:4433/wt', alternates: ['https://192.0.2.1:4433/wt'], current: HASH };

// fakeServer answers hello and join as posecast does, over fake
// WebTransport sessions that a test can drop; unready lists URLs whose
// sessions never become ready; refuseHello says goodbye to a hello with
// that code, refuseJoin answers a join with that error, and refuseResync
// answers a resync with that error.
function fakeServer({ unready = [], refuseHello = null, refuseJoin = null, refuseResync = null } = {}) {
  const server = { sessions: [], hellos: 0, joins: [], resyncs: [], urls: [], hashes: [], tokens: new Map() };
  server.WebTransport = class {
    constructor(url, opts) {
      server.urls.push(url);
      server.hashes.push(opts.serverCertificateHashes);
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
      this.goodbye = (code, message) => send({ type: 'goodbye', code, message });
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

function connect(server, opts = {}) {
  const messages = [];
  const states = [];
  const conn = new Connection({
    base: 'http://localhost:8080/?room=r',
    join: { room: 'r', device: 'web-1', name: 'Ada' },
    fetch: async (url) => {
      assert.equal(String(url), 'http://localhost:8080/cert-hash');
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
  return { conn, messages, states, running };
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
