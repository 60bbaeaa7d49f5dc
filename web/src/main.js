// The posecast page: pick a room, join it, see the others, walk about with
// the mouse and keys or in VR. window.posecast.state() tells what the page
// knows, for tests and for the curious.
//
// The session runs in a worker (session.js; what the two say to each other
// is in channel.js), so that this thread, which draws, delays neither the
// pose schedule nor what arrives. Each frame posts the newest pose to it;
// the worker sends the newest it holds once per tick of the room, timed to
// reach the server just before the tick reads it (pacer.js).
//
// URL parameters: room, name, rate (poses sent a second, 1 to 90, whatever
// the tick, instead of one per tick), copies (2: two poses per tick, for a
// lossy link), token (a join token), wt (a WebTransport URL to use instead
// of the one /cert-hash names; a room that moves to another node is
// followed there all the same).
import { packPose } from './channel.js';
import { DesktopControls } from './desktop.js';
import { poseTime } from './pose.js';
import { RemoteRoom } from './remote.js';
import { RoomScene } from './scene.js';
import { roomSpace, sampleXRPose } from './xr.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const ID_CHARS = /^[A-Za-z0-9_.:@-]{1,64}$/;

// storedId returns an id kept in storage under key, making one up the
// first time.
function storedId(storage, key, prefix) {
  let id = storage.getItem(key);
  if (!id || !ID_CHARS.test(id)) {
    id = prefix + crypto.getRandomValues(new Uint32Array(2)).reduce((s, v) => s + v.toString(36), '');
    storage.setItem(key, id);
  }
  return id;
}

const canvas = $('view');
const scene = new RoomScene(canvas);
const controls = new DesktopControls(canvas);
// Free-running at rate poses a second when the URL says so; else 0, in step
// with the tick.
const rate = params.has('rate') ? Math.max(1, Math.min(90, Number(params.get('rate')) || 30)) : 0;
const copies = params.get('copies') === '2' ? 2 : 1;
const view = new RemoteRoom();
// The device, and the token a server in development mode hands back, live
// as long as the tab: a reconnect resumes the avatar, and a reload (which
// leaves, and joins again) comes back as the same user; two tabs are two
// users.
const join = {
  room: '',
  device: storedId(sessionStorage, 'posecast.device', 'web-'),
  name: '',
  token: undefined,
};
const tokenKey = (room) => `posecast.token.${room}`;
let worker = null;
let placed = false; // the camera has been put where the server placed us
let selfPose = controls.pose(0);
let xr = { supported: false, presenting: false };

function start(room, name) {
  join.room = room;
  join.name = name;
  // A token in the URL names the user the first time this tab sees it; after
  // that the newest token the server handed back does.
  const urlToken = params.get('token');
  if (urlToken && sessionStorage.getItem(`posecast.urltoken.${room}`) !== urlToken) {
    sessionStorage.setItem(`posecast.urltoken.${room}`, urlToken);
    sessionStorage.setItem(tokenKey(room), urlToken);
  }
  join.token = sessionStorage.getItem(tokenKey(room)) || undefined;
  localStorage.setItem('posecast.name', name);
  $('lobby').hidden = true;
  $('hud').hidden = false;
  $('room-name').textContent = room;
  document.title = `${room} · posecast`;
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.addEventListener('message', (e) => {
    const m = e.data;
    view.receive(m, performance.now());
    if (m.type === 'joined') joined(m.msg);
  });
  worker.addEventListener('error', (e) => {
    view.status = { ...view.status, state: 'failed', detail: `worker: ${e.message || 'did not start'}` };
  });
  worker.postMessage({ type: 'start', base: location.href, join, wtURL: params.get('wt') || undefined, hz: rate, copies, origin: performance.timeOrigin });
  addEventListener('pagehide', () => worker.postMessage({ type: 'leave' }));
}

// joined takes the server's joined message: the token, and the first time
// where the server placed us.
function joined(m) {
  if (m.token) {
    sessionStorage.setItem(tokenKey(join.room), m.token);
    // Development mode: the link that opens this user on another device.
    const url = new URL(location.href);
    url.searchParams.set('room', join.room);
    url.searchParams.set('token', m.token);
    $('same-user').href = url.href;
    $('same-user').hidden = false;
  }
  if (!placed) {
    placed = true;
    controls.place(m.position, m.rotation);
  }
}

async function showLobby(problem) {
  $('lobby').hidden = false;
  $('name').value = params.get('name') || localStorage.getItem('posecast.name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
  $('room').value = 'lobby';
  if (problem) {
    $('problem').textContent = problem;
    $('problem').hidden = false;
  }
  $('lobby').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set('room', $('room').value);
    url.searchParams.set('name', $('name').value);
    history.replaceState(null, '', url);
    start($('room').value, $('name').value);
  });
  const rooms = await listRooms();
  if (rooms.length === 0) return;
  $('room-list').hidden = false;
  for (const r of rooms) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.textContent = r.name && r.name !== r.id ? `${r.name} (${r.id})` : r.id;
    a.onclick = () => {
      $('room').value = r.id;
      $('lobby').requestSubmit();
    };
    li.append(a, r.present === undefined ? '' : ` · ${r.present} here`);
    $('rooms').append(li);
  }
}

// listRooms asks the server's rooms API; a server without one lists none.
async function listRooms() {
  try {
    const r = await fetch('/api/rooms', { cache: 'no-store' });
    if (!r.ok) return [];
    const body = await r.json();
    const list = Array.isArray(body) ? body : body.rooms || [];
    return list.filter((x) => x && typeof x.id === 'string');
  } catch {
    return [];
  }
}

async function setupXR() {
  if (!navigator.xr) return;
  xr.supported = await navigator.xr.isSessionSupported('immersive-vr').catch(() => false);
  if (!xr.supported) return;
  const button = $('enter-vr');
  button.hidden = false;
  button.onclick = async () => {
    const session = await navigator.xr.requestSession('immersive-vr', { optionalFeatures: ['local-floor', 'hand-tracking'] });
    scene.renderer.xr.setReferenceSpaceType('local-floor');
    await scene.renderer.xr.setSession(session);
    scene.renderer.xr.setReferenceSpace(roomSpace(scene.renderer.xr.getReferenceSpace(), controls.position, controls.yaw));
    xr.presenting = true;
    button.hidden = true;
    session.addEventListener('end', () => {
      xr.presenting = false;
      button.hidden = false;
      // Back on the desktop where the headset was.
      controls.position[0] = selfPose.head.position[0];
      controls.position[2] = selfPose.head.position[2];
    });
  };
}

let last = performance.now();
let hudAt = 0;

function frame(_, xrFrame) {
  const now = performance.now();
  const dt = Math.min(0.1, (now - last) / 1000);
  last = now;
  let pose = null;
  if (xrFrame && scene.renderer.xr.isPresenting) {
    pose = sampleXRPose(xrFrame, scene.renderer.xr.getReferenceSpace(), poseTime(Date.now()));
    if (pose) selfPose = pose;
  } else {
    controls.step(dt);
    scene.camera.position.fromArray(controls.position);
    scene.camera.quaternion.fromArray(controls.rotation());
    selfPose = pose = controls.pose(poseTime(Date.now()));
  }
  if (pose && worker) {
    const packed = packPose(pose);
    worker.postMessage({ type: 'pose', pose: packed }, [packed.buffer]);
  }
  scene.update(view, now);
  scene.render();
  if (now - hudAt > 250) {
    hudAt = now;
    drawHud();
  }
}

const sending = rate ? `sending ${rate}/s` : `sending ${copies === 2 ? '2 ' : ''}per tick`;

// drawHud shows the panel, with the figures the worker last reported.
function drawHud() {
  if (!worker) return;
  const { state, detail } = view.status;
  $('dot').className = state;
  // Connected has a detail only after a move: where the room went.
  $('status').textContent = `${state}${detail ? ': ' + detail : ''}`;
  const { rtt, updateRate } = view.stats;
  $('stats').textContent = `rtt ${rtt === null ? '–' : `${rtt.toFixed(1)} ms`} · tick ${view.tickMs} ms · ${updateRate.toFixed(1)} updates/s · ${sending}`;
  const items = [...(view.presence || [])].map(([user, metas]) => {
    const li = document.createElement('li');
    const name = metas[0]?.name || user;
    li.textContent = `${name}${user === view.user ? ' (you)' : ''}${metas.length > 1 ? ` · ${metas.length} devices` : ''}`;
    li.className = metas.every((m) => m.stale) ? 'stale' : '';
    return li;
  });
  $('presence').replaceChildren(...items);
}

function resize() {
  scene.resize(innerWidth, innerHeight);
}

// state returns a copy of what the page knows, for tests.
function state() {
  const now = performance.now();
  const avatars = {};
  for (const [id, c, playback] of view.avatars()) {
    const p = playback.sample(now);
    if (!p) continue;
    avatars[id] = {
      name: String(c.name ?? id),
      slot: c.slot,
      position: [...p.head.position],
      rotation: [...p.head.rotation],
      left: p.left ? [...p.left.position] : null,
      right: p.right ? [...p.right.position] : null,
      stale: view.isStale(id),
      delay: playback.delay,
    };
  }
  const presence = {};
  for (const [user, metas] of view.presence || []) {
    presence[user] = { name: metas[0]?.name || user, devices: metas.length, stale: metas.every((m) => m.stale) };
  }
  return {
    connected: view.status.state === 'connected',
    connection: view.status.state,
    detail: view.status.detail,
    url: view.status.url,
    sessions: view.status.sessions,
    room: view.room,
    self: {
      id: view.user,
      name: join.name,
      slot: view.slot,
      position: [...selfPose.head.position],
      rotation: [...selfPose.head.rotation],
    },
    avatars,
    presence,
    entities: view.entities?.size || 0,
    rtt: view.stats.rtt,
    tickMs: view.tickMs,
    updateRate: view.stats.updateRate,
    schedule: rate ? 'free' : 'tick',
    posesSent: view.stats.posesSent,
    margin: view.stats.margin,
    minRtt: view.stats.minRtt,
    resyncs: view.stats.resyncs,
    xr: { ...xr },
  };
}

globalThis.posecast = Object.freeze({ state });
addEventListener('resize', resize);
resize();
scene.renderer.setAnimationLoop(frame);
setupXR();

const room = params.get('room');
if (typeof WebTransport === 'undefined') {
  showLobby(isSecureContext
    ? 'This browser has no WebTransport.'
    : 'WebTransport needs a secure page: open it on https:// or on localhost.');
  $('lobby').querySelector('button').disabled = true;
} else if (room && ID_CHARS.test(room)) {
  start(room, params.get('name') || localStorage.getItem('posecast.name') || `guest-${Math.floor(Math.random() * 9000 + 1000)}`);
} else {
  showLobby(room ? `"${room}" is not a room name: 1 to 64 of A-Z a-z 0-9 _ . : @ -` : '');
}
