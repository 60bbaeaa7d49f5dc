import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '@msgpack/msgpack';
import {
  datagramKind, decodePose, encodePose, packRotation, parsePing, parsePoseUpdate,
  pingDatagram, poseDatagram, poseTime, samePlace, unpackRotation,
} from '../src/pose.js';

const hex = (s) => Uint8Array.from(s.split(/\s+/).filter(Boolean), (h) => parseInt(h, 16));
const view = (b) => new DataView(b.buffer, b.byteOffset, b.byteLength);

// The examples of docs/PROTOCOL.md §6.
const poseExample = { time: 0x01020304, head: { position: [1.5, 1.7, -2.25], rotation: [0, 0, 0, 1] }, left: null, right: null };
const poseDatagramExample = hex('92 01 c4 12  00  04 03 02 01  dc 05 00  a4 06 00  36 f7 ff  ff fd f7 df');
const poseUpdateExample = hex('95 02 ce 00 00 00 2a cc 00 cc 01 c5 00 14  03 00  00 04 03 02 01 dc 05 00 a4 06 00 36 f7 ff ff fd f7 df');

test('a pose datagram is byte for byte the protocol example', () => {
  assert.deepEqual(poseDatagram(poseExample), poseDatagramExample);
  assert.equal(datagramKind(poseDatagramExample), 1);
});

test('the identity rotation packs as 0xdff7fdff', () => {
  assert.equal(packRotation([0, 0, 0, 1]), 0xdff7fdff);
  assert.deepEqual(unpackRotation(0xdff7fdff), [0, 0, 0, 1]);
});

test('a pose update is read as the protocol example says', () => {
  const u = parsePoseUpdate(poseUpdateExample);
  assert.equal(u.seq, 42);
  assert.equal(u.part, 0);
  assert.equal(u.parts, 1);
  assert.equal(u.records.length, 1);
  assert.equal(u.records[0].slot, 3);
  assert.deepEqual(u.records[0].pose, poseExample);
});

test('pose updates with compact integers and heartbeats are read', () => {
  const rec = encodePose(poseExample);
  const d = new Uint8Array([0x95, 0x02, 0x05, 0x00, 0x01, 0xc4, rec.length + 2, 0x07, 0x00, ...rec]);
  const u = parsePoseUpdate(d);
  assert.equal(u.seq, 5);
  assert.equal(u.records[0].slot, 7);
  const hb = parsePoseUpdate(hex('95 02 ce 00 00 00 09 cc 00 cc 00 c5 00 00'));
  assert.deepEqual(hb, { seq: 9, part: 0, parts: 0, records: [] });
});

test('malformed pose updates are refused', () => {
  const cases = {
    'part not below parts': hex('95 02 01 02 02 c5 00 00'),
    'records shorter than declared': hex('95 02 01 00 01 c5 00 0a'),
    'wrong kind': hex('95 01 01 00 01 c4 00'),
    'unknown flags': new Uint8Array([0x95, 0x02, 0x01, 0x00, 0x01, 0xc4, 20, 0, 0, 0x80, ...new Uint8Array(17)]),
    'truncated record': poseUpdateExample.slice(0, -1),
  };
  for (const [name, d] of Object.entries(cases)) {
    assert.throws(() => parsePoseUpdate(d), undefined, name);
  }
});

test('poses with hands round-trip within the quantization', () => {
  const s = Math.SQRT1_2;
  const pose = {
    time: 4294967295,
    head: { position: [-3.2, 1.6, 8388.607], rotation: [0, s, 0, s] },
    left: { position: [-3.4, 1.2, -0.3], rotation: [0.5, 0.5, 0.5, 0.5] },
    right: { position: [-100000, 0, 0.0004], rotation: [0, 0, -1, 0] },
  };
  const rec = encodePose(pose);
  assert.equal(rec.length, 44);
  const got = decodePose(view(rec));
  assert.equal(got.time, pose.time);
  assert.deepEqual(got.right.position, [-8388.607, 0, 0]); // clamped and rounded to the millimetre
  for (const k of ['head', 'left']) {
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(got[k].position[i] - pose[k].position[i]) <= 0.0005, k);
    // q and -q are the same rotation: compare |dot|.
    const dot = got[k].rotation.reduce((a, c, i) => a + c * pose[k].rotation[i], 0);
    assert.ok(Math.abs(dot) > 0.99999, `${k} rotation ${got[k].rotation}`);
  }
  assert.ok(Math.abs(got.right.rotation[2]) > 0.9999);
});

test('rotation packing matches the Go codec on awkward inputs', () => {
  // Values printed by codec.PackRotation and codec.AppendPose.
  const fromGo = [
    [[0.1, -0.7, 0.2, 0.3], 0x5a4524ee],
    [[0.9, 0.1, -0.1, 0.05], 0x24e6c227],
    [[-0.2, 0.3, 0.8, -0.4], 0x969b80d3],
    [[0.5, 0.5, -0.5, -0.5], 0x36825896],
    [[0.123456, 0.654321, -0.33, 0.2], 0x673326bb],
  ];
  for (const [q, want] of fromGo) assert.equal(packRotation(q), want, `${q}`);
  // Halves of a millimetre round away from zero, as Go's math.Round does.
  const halves = { time: 77, head: { position: [-0.0005, 0.0015, -2.5005], rotation: [0, 0, 0, 1] }, left: null, right: null };
  assert.deepEqual(encodePose(halves), hex('00 4d 00 00 00 ff ff ff 02 00 00 3b f6 ff ff fd f7 df'));
  assert.equal(packRotation([0, 0, 0, 0]), 0xdff7fdff); // zero packs as identity
  assert.equal(packRotation([0, 0, 0, -2]), 0xdff7fdff); // normalized, sign folded
  assert.equal(packRotation([NaN, 0, 0, 1]), 0xdff7fdff);
  for (let p = 0; p < 2 ** 32; p += 0x1234567) {
    const q = unpackRotation(p);
    assert.ok(Math.abs(Math.hypot(...q) - 1) < 1e-9, `unpack ${p.toString(16)} is not unit`);
  }
});

test('pose time is the low 32 bits of Unix milliseconds', () => {
  assert.equal(poseTime(2 ** 32 + 5), 5);
  assert.equal(poseTime(1767225600123), 1767225600123 % 2 ** 32);
});

test('a ping is msgpack [3, id] and its echo gives the id back', () => {
  const d = pingDatagram(0xdeadbeef);
  assert.deepEqual(decode(d), [3, 0xdeadbeef]);
  assert.equal(parsePing(d), 0xdeadbeef);
  assert.equal(parsePing(poseDatagramExample), -1);
});

test('records that differ only in their time are in the same place', () => {
  const rec = (pose) => poseDatagram(pose).subarray(4);
  const a = rec(poseExample);
  assert.ok(samePlace(a, rec({ ...poseExample, time: 7 })));
  assert.ok(!samePlace(a, rec({ ...poseExample, head: { ...poseExample.head, position: [1.5, 1.701, -2.25] } })));
  assert.ok(!samePlace(a, rec({ ...poseExample, left: poseExample.head })));
});
