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
// it returns the messages the chunk completes. Chunks are kept as they
// are until their frame is complete, so a chunk must not be reused, and a
// frame's bytes are copied once at most, however many chunks bring it.
export class FrameReader {
  constructor(maxMessage = 16 << 20) {
    this.max = maxMessage;
    this.chunks = []; // bytes received and not yet read, the first from off
    this.off = 0;
    this.held = 0; // how many bytes the chunks hold past off
    this.need = 0; // the length of the frame being read, header included, once known
  }

  push(chunk) {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.held += chunk.length;
    }
    const out = [];
    for (;;) {
      if (this.need === 0) {
        if (this.held < 4) break;
        const h = this.take(4, false);
        const n = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
        if (n === 0 || n > this.max) throw new Error(`control frame of ${n} bytes`);
        this.need = 4 + n;
      }
      if (this.held < this.need) break;
      const frame = this.take(this.need, true);
      this.need = 0;
      out.push(decode(frame.subarray(4)));
    }
    return out;
  }

  // take returns the next n bytes held, which must be there, and consumes
  // them if consume: a view of the first chunk when they are all in it,
  // else a copy.
  take(n, consume) {
    let bytes = this.chunks[0].subarray(this.off, this.off + n);
    let i = 0; // the chunk the bytes end in
    let end = this.off + n; // where in it
    if (bytes.length < n) {
      const part = bytes;
      bytes = new Uint8Array(n);
      bytes.set(part);
      for (let got = part.length; got < n; ) {
        const c = this.chunks[++i];
        end = Math.min(c.length, n - got);
        bytes.set(c.subarray(0, end), got);
        got += end;
      }
    }
    if (consume) {
      this.held -= n;
      this.off = end;
      if (end === this.chunks[i].length) {
        i++;
        this.off = 0;
      }
      this.chunks.splice(0, i);
    }
    return bytes;
  }
}
