import { test } from 'node:test';
import assert from 'node:assert/strict';
import { START } from '../src/jitter.js';
import { RoomView } from '../src/roomview.js';

const avatar = (slot, name, position = [0, 2, 0], time = 1000) => ({
  avatar: true, user: name, name, slot, position, rotation: [0, 0, 0, 1], pose_time: time,
});
const head = (time, position) => ({ time, head: { position, rotation: [0, 0, 0, 1] }, left: null, right: null });
const update = (seq, records, part = 0, parts = 1) => ({ seq, part, parts, records });

// joinedView is a view that joined as "me" in a room with "ada" at slot 1.
function joinedView() {
  const v = new RoomView();
  v.welcome({ tick_ms: 200, repeat: 3 });
  v.apply({ type: 'joined', room: 'r', user: 'me', slot: 0, tick_ms: 200 }, 0);
  v.apply({
    type: 'entities_state',
    seq: 10,
    entities: { me: avatar(0, 'me'), ada: avatar(1, 'Ada', [1, 2, 3]), spawn: { spawn_point: true, position: [0, 0.1, 0] } },
  }, 0);
  v.apply({ type: 'presence_state', state: { me: { metas: [{ phx_ref: 'm1', name: 'me' }] }, ada: { metas: [{ phx_ref: 'a1', name: 'Ada' }] } } }, 0);
  return v;
}

const ids = (v) => [...v.intakes.keys()].sort();

test('the state gives the remote avatars, not our own, at their placed pose', () => {
  const v = joinedView();
  assert.deepEqual(ids(v), ['ada']);
  assert.equal(v.entities.get('ada').name, 'Ada');
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [1, 2, 3]);
  const [[id, point]] = v.drain();
  assert.equal(id, 'ada');
  assert.equal(point.kind, START);
  assert.deepEqual(v.drain(), []);
  assert.equal(v.entities.size, 3);
});

test('pose updates move avatars by slot; unknown slots and our own are skipped', () => {
  const v = joinedView();
  v.applyPoses(update(11, [{ slot: 1, pose: head(2000, [4, 2, 3]) }, { slot: 0, pose: head(2000, [9, 9, 9]) }, { slot: 7, pose: head(2000, [0, 0, 0]) }]), 100);
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [4, 2, 3]);
  assert.equal(v.intakes.has('me'), false);
  assert.equal(v.seq, 11);
});

test('a pose update older than the one held is ignored', () => {
  const v = joinedView();
  v.applyPoses(update(13, [{ slot: 1, pose: head(2400, [5, 2, 3]) }]), 100);
  v.applyPoses(update(12, [{ slot: 1, pose: head(2200, [4, 2, 3]) }]), 110);
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [5, 2, 3]);
});

test('diffs create, update and delete, and presence diffs join before they leave', () => {
  const v = joinedView();
  v.apply({ type: 'entities_diff', creates: { bob: avatar(2, 'Bob') }, updates: { spawn: { color: 'red', spawn_point: null } }, deletes: ['ada', 'nobody'] }, 0);
  assert.deepEqual(ids(v), ['bob']);
  assert.deepEqual(v.entities.get('spawn'), { position: [0, 0.1, 0], color: 'red' });
  assert.equal(v.slots.get(2), 'bob');
  assert.equal(v.slots.has(1), false);
  // A meta that joined and left within one diff, and a meta update.
  v.apply({
    type: 'presence_diff',
    joins: { bob: { metas: [{ phx_ref: 'b1', name: 'Bob' }] }, ada: { metas: [{ phx_ref: 'a2', phx_ref_prev: 'a1', name: 'Ada', stale: true }] } },
    leaves: { bob: { metas: [{ phx_ref: 'b1' }] }, ada: { metas: [{ phx_ref: 'a1' }] } },
  }, 0);
  assert.equal(v.presence.has('bob'), false);
  assert.deepEqual(v.presence.get('ada').map((m) => m.phx_ref), ['a2']);
});

test('a loss it cannot recover from asks for one resync, and the state ends it', () => {
  const v = joinedView();
  assert.equal(v.applyPoses(update(11, []), 0), false);
  assert.equal(v.applyPoses(update(12, [], 0, 2), 0), false); // part 1 of 12 lost, 13 and 14 lost whole
  assert.equal(v.applyPoses(update(15, [], 1, 2), 0), false); // 14 is done on the server: 3 past 11
  assert.equal(v.applyPoses({ seq: 15, part: 0, parts: 0, records: [] }, 0), true); // heartbeat: 15 done, 4 past 11
  assert.equal(v.applyPoses({ seq: 15, part: 0, parts: 0, records: [] }, 0), false); // asked once
  assert.equal(v.resyncs, 1);
  v.apply({ type: 'entities_state', seq: 15, entities: { me: avatar(0, 'me'), ada: avatar(1, 'Ada', [7, 2, 7], 3000) } }, 0);
  assert.equal(v.seq, 15);
  assert.equal(v.resyncing, false);
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [7, 2, 7]);
});

test('lost updates within the repeat window ask for nothing', () => {
  const v = joinedView();
  for (const seq of [11, 13, 14]) assert.equal(v.applyPoses(update(seq, []), 0), false);
  assert.equal(v.seq, 14);
});

test('a rejoin keeps the avatars it still finds, so that nothing flaps', () => {
  const v = joinedView();
  v.applyPoses(update(11, [{ slot: 1, pose: head(2000, [4, 2, 3]) }]), 100);
  const intake = v.intakes.get('ada');
  v.apply({ type: 'joined', room: 'r', user: 'me', slot: 0, tick_ms: 200, resumed: true }, 200);
  v.apply({ type: 'entities_state', seq: 3, entities: { me: avatar(0, 'me'), ada: avatar(1, 'Ada', [4, 2, 3], 2000) } }, 200);
  assert.equal(v.intakes.get('ada'), intake);
  assert.equal(v.seq, 3);
});

test('the update rate counts the pose updates of the last two seconds', () => {
  const v = joinedView();
  for (let i = 0; i < 15; i++) v.applyPoses(update(11 + i, []), i * 200);
  assert.equal(v.updateRate(2900), 5);
  assert.equal(v.updateRate(10000), 0);
});

test('an avatar created again starts afresh, whatever its new device clock says', () => {
  const v = joinedView();
  v.applyPoses(update(11, [{ slot: 1, pose: head(50000, [4, 2, 3]) }]), 100);
  // Ada left and came back on another device within a tick: one create,
  // at a new slot, and poses stamped a little behind the old ones.
  v.apply({ type: 'entities_diff', creates: { ada: avatar(2, 'Ada', [0, 2, 0], 49000) } }, 200);
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [0, 2, 0]);
  v.applyPoses(update(12, [{ slot: 2, pose: head(49900, [1, 2, 1]) }]), 300);
  assert.deepEqual(v.intakes.get('ada').pose.head.position, [1, 2, 1]);
  assert.deepEqual(v.drain().map(([id, p]) => [id, p.kind]), [['ada', START], ['ada', START], ['ada', START], ['ada', START]]);
});

test('a resync the server refused is asked for again a second later', () => {
  const v = joinedView();
  const heartbeat = (seq) => ({ seq, part: 0, parts: 0, records: [] });
  assert.equal(v.applyPoses(heartbeat(15), 0), true); // 15 done, 4 past 10
  v.resyncRef = 7; // as main.js sends it
  v.apply({ type: 'error', ref: 3, code: 'not_found', message: 'another request' }, 100);
  v.apply({ type: 'error', ref: 7, code: 'rate_limited', message: 'over the room operation limit' }, 100);
  assert.equal(v.applyPoses(heartbeat(16), 500), false);
  assert.equal(v.applyPoses(heartbeat(16), 1100), true);
  assert.equal(v.applyPoses(heartbeat(17), 1200), false); // asked again, once
  assert.equal(v.resyncs, 2);
  v.apply({ type: 'entities_state', seq: 17, entities: { me: avatar(0, 'me'), ada: avatar(1, 'Ada') } }, 1300);
  assert.equal(v.resyncing, false);
  assert.equal(v.applyPoses(heartbeat(18), 1400), false);
});

test('a resync never answered is asked for again after a few seconds', () => {
  const v = joinedView();
  const heartbeat = (seq) => ({ seq, part: 0, parts: 0, records: [] });
  assert.equal(v.applyPoses(heartbeat(15), 0), true);
  assert.equal(v.applyPoses(heartbeat(16), 4000), false);
  assert.equal(v.applyPoses(heartbeat(20), 5000), true);
  assert.equal(v.applyPoses(heartbeat(21), 6000), false);
  assert.equal(v.resyncs, 2);
});

test('under interest management far avatars may come far_every ticks apart, and their buffers expect it', () => {
  const v = new RoomView();
  v.apply({ type: 'joined', room: 'r', user: 'me', slot: 0, tick_ms: 100, interest: { radius: 5, nearest: 24, far_every: 4, cell: 4 } }, 0);
  v.apply({ type: 'entities_state', seq: 1, entities: { ada: avatar(1, 'Ada') } }, 0);
  assert.equal(v.intakes.get('ada').maxInterval, 400);
  v.apply({ type: 'joined', room: 'q', user: 'me', slot: 0, tick_ms: 100 }, 0);
  v.apply({ type: 'entities_state', seq: 1, entities: { bob: avatar(1, 'Bob') } }, 0);
  assert.equal(v.intakes.get('bob').maxInterval, 100);
});

test('slots follow their avatars: a slot taken over, an avatar made again elsewhere, one deleted', () => {
  const v = joinedView();
  v.apply({ type: 'entities_diff', creates: { bo: avatar(2, 'Bo') } }, 0);
  // Ada leaves and Cy gets her slot; Bo is made again (a new join) at another slot.
  v.apply({ type: 'entities_diff', deletes: ['ada'], creates: { cy: avatar(1, 'Cy'), bo: avatar(5, 'Bo') } }, 0);
  assert.deepEqual([...v.slots].sort((a, b) => a[0] - b[0]), [[0, 'me'], [1, 'cy'], [5, 'bo']]);
  assert.equal(v.avatarSlots.get('ada'), undefined);
  v.apply({ type: 'entities_diff', deletes: ['cy'] }, 0);
  assert.deepEqual([...v.slots].sort((a, b) => a[0] - b[0]), [[0, 'me'], [5, 'bo']]);
  // A state of a thousand avatars maps each slot to its own.
  const entities = {};
  for (let i = 0; i < 1000; i++) entities[`u${i}`] = avatar(i, `u${i}`);
  v.apply({ type: 'entities_state', seq: 20, entities }, 0);
  assert.equal(v.slots.size, 1000);
  assert.equal(v.slots.get(999), 'u999');
  assert.equal(v.avatarSlots.get('u999'), 999);
});
