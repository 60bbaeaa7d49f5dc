import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePose, poseDatagram, parsePoseUpdate } from '../src/pose.js';
import { PoseSender, TickPacer } from '../src/pacer.js';
import { roomSpace, sampleXRPose } from '../src/xr.js';

// A fake XRFrame: poses by space, in one reference space only, as a
// headset's runtime would give them.
function fakeFrame({ viewer, spaces = new Map(), inputSources = [] }) {
  const room = { name: 'room' };
  const frame = {
    session: { inputSources },
    getViewerPose(ref) {
      assert.equal(ref, room, 'viewer pose asked in another space');
      return viewer ? { transform: viewer, views: [] } : null;
    },
    getPose(space, ref) {
      assert.equal(ref, room);
      const t = spaces.get(space);
      return t ? { transform: t, emulatedPosition: false } : null;
    },
    getJointPose(joint, ref) {
      assert.equal(ref, room);
      const t = spaces.get(joint);
      return t ? { transform: t, radius: 0.02 } : null;
    },
  };
  return { frame, room };
}

const xf = (p, o = [0, 0, 0, 1]) => ({
  position: { x: p[0], y: p[1], z: p[2], w: 1 },
  orientation: { x: o[0], y: o[1], z: o[2], w: o[3] },
});

// The pose as a receiver reads it back from the datagram.
function roundTrip(pose) {
  const d = poseDatagram(pose);
  return decodePose(new DataView(d.buffer), 4);
}

const near = (a, b, eps = 0.001) => a.every((v, i) => Math.abs(v - b[i]) <= eps);

test('the viewer and both controllers are sent, in room coordinates', () => {
  const leftGrip = {};
  const rightGrip = {};
  const s = Math.SQRT1_2;
  const { frame, room } = fakeFrame({
    viewer: xf([1, 1.6, -2], [0, s, 0, s]),
    spaces: new Map([[leftGrip, xf([0.8, 1.1, -2.3])], [rightGrip, xf([1.2, 1.1, -2.3], [s, 0, 0, s])]]),
    inputSources: [
      { handedness: 'right', gripSpace: rightGrip },
      { handedness: 'left', gripSpace: leftGrip },
      { handedness: 'none', gripSpace: {} }, // a gaze or screen input has no hand
    ],
  });
  const pose = sampleXRPose(frame, room, 123456);
  const got = roundTrip(pose);
  assert.equal(got.time, 123456);
  assert.ok(near(got.head.position, [1, 1.6, -2]));
  assert.ok(near(got.head.rotation, [0, s, 0, s]));
  assert.ok(near(got.left.position, [0.8, 1.1, -2.3]));
  assert.ok(near(got.right.position, [1.2, 1.1, -2.3]));
  assert.ok(near(got.right.rotation, [s, 0, 0, s]));
});

test('tracked hands are sent by their wrist', () => {
  const wrist = {};
  const { frame, room } = fakeFrame({
    viewer: xf([0, 1.7, 0]),
    spaces: new Map([[wrist, xf([-0.3, 1.2, -0.4])]]),
    inputSources: [{ handedness: 'left', hand: new Map([['wrist', wrist]]) }],
  });
  const got = roundTrip(sampleXRPose(frame, room, 1));
  assert.ok(near(got.left.position, [-0.3, 1.2, -0.4]));
  assert.equal(got.right, null);
});

test('a hand that lost tracking is left out, and a lost viewer sends nothing', () => {
  const grip = {};
  const lost = fakeFrame({ viewer: xf([0, 1.7, 0]), inputSources: [{ handedness: 'right', gripSpace: grip }] });
  const pose = sampleXRPose(lost.frame, lost.room, 1);
  assert.equal(pose.right, null);
  assert.equal(poseDatagram(pose).length, 4 + 18);
  const blind = fakeFrame({ viewer: null });
  assert.equal(sampleXRPose(blind.frame, blind.room, 1), null);
});

test('what the sender sends is what a receiver of the pose update reads', () => {
  const grip = {};
  const { frame, room } = fakeFrame({
    viewer: xf([3.25, 1.5, 4]),
    spaces: new Map([[grip, xf([3, 1, 3.75])]]),
    inputSources: [{ handedness: 'left', gripSpace: grip }],
  });
  let datagram;
  new PoseSender(new TickPacer(), (d) => { datagram = d; }).offer(0, () => sampleXRPose(frame, room, 42));
  // The server relays the record as it came, behind a slot number.
  const rec = datagram.subarray(4);
  const update = new Uint8Array([0x95, 0x02, 0x01, 0x00, 0x01, 0xc4, rec.length + 2, 9, 0, ...rec]);
  const { records } = parsePoseUpdate(update);
  assert.equal(records[0].slot, 9);
  assert.deepEqual(records[0].pose.head.position, [3.25, 1.5, 4]);
  assert.deepEqual(records[0].pose.left.position, [3, 1, 3.75]);
});

test('the room space puts the standing place at the room position', () => {
  class RigidTransform {
    constructor(position, orientation) {
      this.position = position;
      this.orientation = orientation;
      this.inverse = { of: this };
    }
  }
  let offset;
  const base = { getOffsetReferenceSpace: (t) => { offset = t; return 'room'; } };
  assert.equal(roomSpace(base, [2, 2.1, -3], Math.PI, RigidTransform), 'room');
  const standing = offset.of;
  assert.deepEqual(standing.position, { x: 2, y: 0, z: -3 });
  assert.ok(Math.abs(standing.orientation.y - 1) < 1e-12 && Math.abs(standing.orientation.w) < 1e-12);
});
