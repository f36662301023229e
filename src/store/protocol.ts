/**
 * The store's wire format: length-prefixed binary frames.
 *
 *   request:  u32 length | u8 op     | u32 id | fields…
 *   response: u32 length | u8 status | u32 id | fields…
 *
 * `length` counts the bytes after itself; each field is `u32 length | bytes`. Values
 * are bytes; keys are UTF-8. One decoder serves both directions.
 */
export const Op = { set: 1, get: 2, add: 3, compareSet: 4, delete: 5, numKeys: 6, check: 7, cancel: 8 } as const;
export type OpCode = (typeof Op)[keyof typeof Op];
export const Status = { ok: 0, error: 1 } as const;

/** Bytes of the fixed header after the length prefix: the op/status byte and the id. */
const HEADER = 5;

/** Encodes one frame with `fields`. */
export function encodeFrame(code: number, id: number, fields: readonly Uint8Array[]): Buffer {
  let size = 4 + HEADER;
  for (const f of fields) size += 4 + f.length;
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt32LE(size - 4, 0);
  buf.writeUInt8(code, 4);
  buf.writeUInt32LE(id, 5);
  let at = 4 + HEADER;
  for (const f of fields) {
    buf.writeUInt32LE(f.length, at);
    buf.set(f, at + 4);
    at += 4 + f.length;
  }
  return buf;
}

/** A decoded frame. Field buffers are views into the received bytes. */
export interface Frame {
  code: number;
  id: number;
  fields: Buffer[];
}

/** Thrown by {@link FrameReader} on bytes that cannot be a frame. */
export class MalformedFrameError extends Error {}

/**
 * Accumulates socket chunks and yields whole frames. A frame longer than
 * `maxFrameBytes`, or whose fields overrun it, is a MalformedFrameError.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes: number) {}

  /** Adds `chunk` and returns every frame now complete. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const length = head.readUInt32LE(0);
      if (length < HEADER || length > this.maxFrameBytes) throw new MalformedFrameError(`frame length ${length} outside [${HEADER}, ${this.maxFrameBytes}]`);
      if (this.buffered < 4 + length) break;
      const body = this.take(4 + length).subarray(4);
      frames.push(decodeBody(body));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    const first = this.peek(n); // at least n bytes now
    let out: Buffer;
    if (first.length === n) {
      out = first;
      this.chunks.shift();
    } else {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    }
    this.buffered -= n;
    return out;
  }
}

function decodeBody(body: Buffer): Frame {
  const code = body.readUInt8(0);
  const id = body.readUInt32LE(1);
  const fields: Buffer[] = [];
  let at = HEADER;
  while (at < body.length) {
    if (at + 4 > body.length) throw new MalformedFrameError('truncated field length');
    const len = body.readUInt32LE(at);
    if (at + 4 + len > body.length) throw new MalformedFrameError('field overruns its frame');
    fields.push(body.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return { code, id, fields };
}

const encoder = new TextEncoder();
/** UTF-8 bytes of a string value or key. */
export function bytesOf(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}
