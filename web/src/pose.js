// The compact pose record and the datagrams that carry it (docs/PROTOCOL.md §6),
// as codec/pose.go and codec/datagram.go write them.
//
// A pose is {time, head, left, right}: time is the sender's clock (low 32 bits
// of Unix milliseconds), head a transform, left and right a transform or null.
// A transform is {position: [x, y, z] in metres, rotation: [x, y, z, w]}.

const TRANSFORM_SIZE = 13;
const MIN_POSE_SIZE = 5 + TRANSFORM_SIZE;

const DATAGRAM_POSE = 1;
export const DATAGRAM_POSES = 2;
export const DATAGRAM_PING = 3;

const FLAG_LEFT = 1;
const FLAG_RIGHT = 2;
const POSITION_LIMIT = 8388.607;
const ROTATION_STEPS = 1022; // 10 bits, the top level unused so that 511 is zero

// poseTime returns the low 32 bits of a Unix time in milliseconds.
export function poseTime(unixMillis) {
  return unixMillis >>> 0;
}

// roundHalfAway rounds as Go's math.Round does: halves away from zero.
function roundHalfAway(v) {
  return Math.sign(v) * Math.round(Math.abs(v));
}

function quantizePosition(v) {
  if (Number.isNaN(v)) return 0;
  v = Math.max(-POSITION_LIMIT, Math.min(POSITION_LIMIT, v));
  return roundHalfAway(v / 0.001); // as Go divides by codec.PositionUnit
}

// packRotation packs a quaternion as "smallest three": the index of the
// largest component in bits 31–30 and the other three as 10-bit steps.
export function packRotation(q) {
  let [x, y, z, w] = q;
  let n = Math.hypot(x, y, z, w);
  if (!(n > 0) || !Number.isFinite(n)) {
    [x, y, z, w, n] = [0, 0, 0, 1, 1];
  }
  const c = [x, y, z, w];
  let largest = 0;
  for (let i = 1; i < 4; i++) {
    if (Math.abs(c[i]) > Math.abs(c[largest])) largest = i;
  }
  const sign = (c[largest] < 0 ? -1 : 1) / n;
  let packed = largest * 2 ** 30;
  let shift = 20;
  for (let i = 0; i < 4; i++) {
    if (i === largest) continue;
    const v = c[i] * sign * Math.SQRT2;
    const step = Math.max(0, Math.min(ROTATION_STEPS, Math.round(((v + 1) / 2) * ROTATION_STEPS)));
    packed += step * 2 ** shift;
    shift -= 10;
  }
  return packed;
}

// unpackRotation reverses packRotation; every uint32 gives a unit quaternion.
export function unpackRotation(packed) {
  const q = [0, 0, 0, 0];
  const largest = Math.floor(packed / 2 ** 30);
  let shift = 20;
  let sum = 0;
  for (let i = 0; i < 4; i++) {
    if (i === largest) continue;
    const step = Math.min(Math.floor(packed / 2 ** shift) & 1023, ROTATION_STEPS);
    q[i] = ((step / ROTATION_STEPS) * 2 - 1) / Math.SQRT2;
    sum += q[i] * q[i];
    shift -= 10;
  }
  if (sum > 1) {
    const s = 1 / Math.sqrt(sum);
    for (let i = 0; i < 4; i++) q[i] *= s;
    sum = 1;
  }
  q[largest] = Math.sqrt(1 - sum);
  return q;
}

// poseSize returns the size of a pose's record on the wire.
function poseSize(pose) {
  return MIN_POSE_SIZE + (pose.left ? TRANSFORM_SIZE : 0) + (pose.right ? TRANSFORM_SIZE : 0);
}

function writeTransform(view, off, t) {
  for (let i = 0; i < 3; i++) {
    const q = quantizePosition(t.position[i]);
    view.setUint8(off++, q & 0xff);
    view.setUint8(off++, (q >> 8) & 0xff);
    view.setUint8(off++, (q >> 16) & 0xff);
  }
  view.setUint32(off, packRotation(t.rotation), true);
  return off + 4;
}

function readTransform(view, off) {
  const position = [0, 0, 0];
  for (let i = 0; i < 3; i++) {
    let q = (view.getUint8(off) | (view.getUint8(off + 1) << 8) | (view.getUint8(off + 2) << 16)) << 8 >> 8;
    q = Math.max(q, -(2 ** 23 - 1));
    position[i] = q / 1000;
    off += 3;
  }
  return { position, rotation: unpackRotation(view.getUint32(off, true)) };
}

// writePose writes a pose record at off in view and returns the offset after it.
function writePose(view, off, pose) {
  view.setUint8(off, (pose.left ? FLAG_LEFT : 0) | (pose.right ? FLAG_RIGHT : 0));
  view.setUint32(off + 1, pose.time >>> 0, true);
  off = writeTransform(view, off + 5, pose.head);
  if (pose.left) off = writeTransform(view, off, pose.left);
  if (pose.right) off = writeTransform(view, off, pose.right);
  return off;
}

// encodePose returns a pose's record.
export function encodePose(pose) {
  const b = new Uint8Array(poseSize(pose));
  writePose(new DataView(b.buffer), 0, pose);
  return b;
}

// recordSize returns the size a record with these flags has, or -1 for
// flags the protocol does not know.
function recordSize(flags) {
  if (flags & ~(FLAG_LEFT | FLAG_RIGHT)) return -1;
  return MIN_POSE_SIZE + (flags & FLAG_LEFT ? TRANSFORM_SIZE : 0) + (flags & FLAG_RIGHT ? TRANSFORM_SIZE : 0);
}

// decodePose reads the pose record at off in view; it throws on a record
// that is not well formed.
export function decodePose(view, off = 0, end = view.byteLength) {
  const flags = view.getUint8(off);
  const size = recordSize(flags);
  if (size < 0 || end - off < size) throw new Error('malformed pose record');
  const pose = { time: view.getUint32(off + 1, true), head: readTransform(view, off + 5), left: null, right: null };
  let o = off + 5 + TRANSFORM_SIZE;
  if (flags & FLAG_LEFT) {
    pose.left = readTransform(view, o);
    o += TRANSFORM_SIZE;
  }
  if (flags & FLAG_RIGHT) pose.right = readTransform(view, o);
  return pose;
}

// samePlace reports whether two pose records put the avatar in the same
// place, differing at most in their time: the server keeps the first time
// of a run of such records (codec.SamePlace).
export function samePlace(a, b) {
  if (a.length !== b.length || a.length < 5) return false;
  if (a[0] !== b[0]) return false;
  for (let i = 5; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// poseDatagram returns a client's pose datagram: [1, bin8(record)].
export function poseDatagram(pose) {
  const n = poseSize(pose);
  const b = new Uint8Array(4 + n);
  b.set([0x92, DATAGRAM_POSE, 0xc4, n]);
  writePose(new DataView(b.buffer), 4, pose);
  return b;
}

// datagramKind returns a datagram's kind, or 0 when it is not a msgpack
// array that starts with a positive fixint.
export function datagramKind(b) {
  if (b.length < 2 || (b[0] & 0xf0) !== 0x90 || b[1] > 0x7f) return 0;
  return b[1];
}

// readUint reads a msgpack unsigned integer of any width at off.
function readUint(view, off) {
  const c = view.getUint8(off);
  if (c <= 0x7f) return [c, off + 1];
  if (c === 0xcc) return [view.getUint8(off + 1), off + 2];
  if (c === 0xcd) return [view.getUint16(off + 1), off + 3];
  if (c === 0xce) return [view.getUint32(off + 1), off + 5];
  throw new Error('malformed pose update');
}

// parsePoseUpdate decodes a server's pose update, [2, seq, part, parts,
// bin(records)], into {seq, part, parts, records: [{slot, pose}]}. It throws
// on a datagram that is not well formed.
export function parsePoseUpdate(b) {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 2 || b[0] !== 0x95 || b[1] !== DATAGRAM_POSES) throw new Error('not a pose update');
  let off = 2;
  let seq, part, parts;
  [seq, off] = readUint(view, off);
  [part, off] = readUint(view, off);
  [parts, off] = readUint(view, off);
  if (part > 255 || parts > 255 || (parts > 0 && part >= parts)) throw new Error('malformed pose update');
  let n;
  const bin = view.getUint8(off);
  if (bin === 0xc4) [n, off] = [view.getUint8(off + 1), off + 2];
  else if (bin === 0xc5) [n, off] = [view.getUint16(off + 1), off + 3];
  else throw new Error('malformed pose update');
  if (off + n !== b.length) throw new Error('malformed pose update');
  const records = [];
  while (off < b.length) {
    if (b.length - off < 2 + MIN_POSE_SIZE) throw new Error('truncated pose record');
    const slot = view.getUint16(off, true);
    const size = recordSize(view.getUint8(off + 2));
    if (size < 0 || b.length - off - 2 < size) throw new Error('malformed pose record');
    records.push({ slot, pose: decodePose(view, off + 2, off + 2 + size) });
    off += 2 + size;
  }
  return { seq, part, parts, records };
}

// pingDatagram returns a ping, [3, id], that the server echoes; id is a uint32.
export function pingDatagram(id) {
  const b = new Uint8Array(7);
  b.set([0x92, DATAGRAM_PING, 0xce]);
  new DataView(b.buffer).setUint32(3, id >>> 0);
  return b;
}

// parsePing returns the id of an echoed ping, or -1.
export function parsePing(b) {
  if (b.length !== 7 || b[0] !== 0x92 || b[1] !== DATAGRAM_PING || b[2] !== 0xce) return -1;
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(3);
}
