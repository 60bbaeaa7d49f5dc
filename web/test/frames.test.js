import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame, FrameReader } from '../src/frames.js';

test('frames are read whatever the chunks they come in', () => {
  const msgs = [{ type: 'ok', ref: 1 }, { type: 'event', name: 'wave', data: 'x'.repeat(300) }, { type: 'pong', ref: 2, t: 7 }];
  const bytes = Uint8Array.from(msgs.flatMap((m) => [...encodeFrame(m)]));
  for (const size of [1, 2, 3, 5, 7, 64, bytes.length]) {
    const r = new FrameReader();
    const got = [];
    for (let off = 0; off < bytes.length; off += size) got.push(...r.push(bytes.slice(off, off + size)));
    assert.deepEqual(got, msgs, `in chunks of ${size}`);
  }
});

test('a frame over the limit is refused once its length is read', () => {
  const r = new FrameReader(100);
  assert.deepEqual(r.push(Uint8Array.of(0, 0)), []);
  assert.throws(() => r.push(Uint8Array.of(0, 101)), /control frame of 101 bytes/);
  assert.throws(() => new FrameReader().push(Uint8Array.of(0, 0, 0, 0)), /control frame of 0 bytes/);
});

test('a 1 MiB frame in 1 KiB chunks is read, copying each byte about once', (t) => {
  const entities = {};
  for (let i = 0; i < 1000; i++) entities['e' + i] = { blob: 'x'.repeat(1040) };
  const frame = encodeFrame({ type: 'entities_state', seq: 1, entities });
  assert.ok(frame.length > 1 << 20);
  // Count the bytes copied between arrays; a reader that copied what it
  // holds on every chunk would copy about half a gigabyte.
  const set = Uint8Array.prototype.set;
  let copied = 0;
  Uint8Array.prototype.set = function (a, off) {
    copied += a.length;
    return set.call(this, a, off);
  };
  const r = new FrameReader();
  const got = [];
  const start = performance.now();
  try {
    for (let off = 0; off < frame.length; off += 1024) got.push(...r.push(frame.subarray(off, off + 1024)));
  } finally {
    Uint8Array.prototype.set = set;
  }
  t.diagnostic(`${frame.length} bytes in ${Math.ceil(frame.length / 1024)} chunks: ${(performance.now() - start).toFixed(1)} ms, ${copied} bytes copied`);
  assert.equal(got.length, 1);
  assert.equal(got[0].seq, 1);
  assert.equal(Object.keys(got[0].entities).length, 1000);
  assert.equal(got[0].entities.e999.blob.length, 1040);
  assert.ok(copied <= 2 * frame.length, `${copied} bytes copied for a frame of ${frame.length}`);
});
