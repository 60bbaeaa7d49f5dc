// Control stream framing (docs/PROTOCOL.md §1): every message is one msgpack
// map behind a 4-byte big-endian length.
import { decode, encode } from '@msgpack/msgpack';

// encodeFrame returns msg, a plain object with a "type", framed.
export function encodeFrame(msg) {
  const body = encode(msg, { ignoreUndefined: true });
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

// FrameReader cuts a byte stream into messages. push a chunk as it comes;
// it returns the messages the chunk completes.
export class FrameReader {
  constructor(maxMessage = 16 << 20) {
    this.max = maxMessage;
    this.buf = new Uint8Array(0);
  }

  push(chunk) {
    const buf = new Uint8Array(this.buf.length + chunk.length);
    buf.set(this.buf);
    buf.set(chunk, this.buf.length);
    const view = new DataView(buf.buffer);
    const out = [];
    let off = 0;
    while (buf.length - off >= 4) {
      const n = view.getUint32(off);
      if (n === 0 || n > this.max) throw new Error(`control frame of ${n} bytes`);
      if (buf.length - off - 4 < n) break;
      out.push(decode(buf.subarray(off + 4, off + 4 + n)));
      off += 4 + n;
    }
    this.buf = buf.slice(off);
    return out;
  }
}
