/**
 * The store's wire format: length-prefixed binary frames, little-endian.
 *
 *   request:  u32 length | u8 op     | u32 id | field…
 *   response: u32 length | u8 status | u32 id | field…
 *   field:    u32 length | bytes
 *
 * `length` counts the bytes after itself (so at least {@link HEADER_BYTES}). Keys are
 * UTF-8, values are raw bytes, numbers are decimal ASCII (as torch's TCPStore keeps
 * counters). One reader and one encoder serve both directions.
 */

/** Request op codes. */
export const Op = {
  set: 1,
  get: 2,
  add: 3,
  compareSet: 4,
  delete: 5,
  numKeys: 6,
  check: 7,
  wait: 8,
  /** Drops a parked get/wait; carries the id of the request it cancels; no reply. */
  cancel: 9,
  /** set whose value the server deletes after `readers` gets (field 3, decimal). */
  setForReaders: 10,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Response status codes. A status-error frame with id 0 is a connection-level error. */
export const Status = { ok: 0, error: 1 } as const;

const opNames = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]));

/** The op's name for messages (`op7` for unknown codes). */
export function opName(code: number): string {
  return opNames.get(code) ?? `op${code}`;
}

/** True for a request op code the server knows. */
export function isOp(code: number): boolean {
  return opNames.has(code);
}

/** True for a response status code. */
export function isStatus(code: number): boolean {
  return code === Status.ok || code === Status.error;
}

/** Bytes after the length prefix that every frame has: the op/status byte and the id. */
export const HEADER_BYTES = 5;
/** Largest frame the u32 length prefix can describe. */
export const MAX_FRAME_BYTES = 0xffff_ffff;

/** A field: bytes as they are, or a string written as UTF-8. */
export type Field = Uint8Array | string;

/**
 * Encodes one frame into a single buffer (one write, one syscall when corked with
 * its neighbours). Strings are written in place without an intermediate copy.
 * Returns null when the frame would not fit the u32 length prefix.
 */
export function encodeFrame(code: number, id: number, fields: readonly Field[]): Buffer | null {
  let size = 4 + HEADER_BYTES;
  for (const f of fields) size += 4 + (typeof f === 'string' ? Buffer.byteLength(f, 'utf8') : f.byteLength);
  if (size - 4 > MAX_FRAME_BYTES) return null;
  const buf = Buffer.allocUnsafe(size);
  buf.writeUInt32LE(size - 4, 0);
  buf[4] = code;
  buf.writeUInt32LE(id, 5);
  let at = 4 + HEADER_BYTES;
  for (const f of fields) {
    if (typeof f === 'string') {
      const n = buf.write(f, at + 4, 'utf8');
      buf.writeUInt32LE(n, at);
      at += 4 + n;
    } else {
      buf.writeUInt32LE(f.byteLength, at);
      buf.set(f, at + 4);
      at += 4 + f.byteLength;
    }
  }
  return buf;
}

/** Header of a frame whose body follows separately (a large value written without a copy). */
export function encodeHeaderForValue(code: number, id: number, valueBytes: number): Buffer {
  const buf = Buffer.allocUnsafe(4 + HEADER_BYTES + 4);
  buf.writeUInt32LE(HEADER_BYTES + 4 + valueBytes, 0);
  buf[4] = code;
  buf.writeUInt32LE(id, 5);
  buf.writeUInt32LE(valueBytes, 9);
  return buf;
}

/**
 * Walks the fields of one frame body without allocating: `next()` advances, then
 * `start`/`end` bound the field inside `buf`. One cursor per connection is reused.
 */
export class FieldCursor {
  buf: Buffer = Buffer.alloc(0);
  start = 0;
  end = 0;
  private at = 0;
  private limit = 0;

  /** Points the cursor at the body `buf[from, to)`. */
  reset(buf: Buffer, from: number, to: number): void {
    this.buf = buf;
    this.at = from;
    this.limit = to;
    this.start = this.end = from;
  }

  /** Advances to the next field; false at the end. Throws on a field that overruns the frame. */
  next(): boolean {
    if (this.at === this.limit) return false;
    if (this.at + 4 > this.limit) throw new MalformedFrameError('truncated field length');
    const len = this.buf.readUInt32LE(this.at);
    if (this.at + 4 + len > this.limit) throw new MalformedFrameError(`field of ${len} bytes overruns its frame`);
    this.start = this.at + 4;
    this.end = this.start + len;
    this.at = this.end;
    return true;
  }

  /** Advances and returns the field as a UTF-8 string; `what` names it when missing. */
  string(what: string): string {
    if (!this.next()) throw new MalformedFrameError(`missing field '${what}'`);
    return this.buf.toString('utf8', this.start, this.end);
  }

  /** Advances and returns the field as a view into the frame (no copy). */
  bytes(what: string): Buffer {
    if (!this.next()) throw new MalformedFrameError(`missing field '${what}'`);
    return this.buf.subarray(this.start, this.end);
  }

  /** Advances and returns the field parsed as a decimal integer. */
  integer(what: string): number {
    const n = Number(this.string(what));
    if (!Number.isSafeInteger(n)) throw new MalformedFrameError(`field '${what}' is not an integer`);
    return n;
  }
}

/** Bytes that cannot be a frame (bad length, unknown op, a field overrunning its frame). */
export class MalformedFrameError extends Error {
  override readonly name = 'MalformedFrameError';
}

/** What a {@link FrameReader} reports. */
export interface FrameHandler {
  /**
   * A whole frame; its body (fields) is `buf[start, end)`. Buffers are never reused,
   * so views into the body stay valid (and keep the chunk they point into alive).
   */
  frame(code: number, id: number, buf: Buffer, start: number, end: number): void;
  /** A frame whose length exceeds the limit: its body is skipped as it arrives. */
  oversize(code: number, id: number, length: number): void;
  /** The stream is not frames any more (bad length or code); the reader stops. */
  fatal(reason: string): void;
}

/**
 * Turns socket chunks into frames. Whole frames inside one chunk are handed out as
 * views of that chunk (no copy); a frame split across chunks is joined once, when its
 * last byte arrives, so a large value costs one copy, never a copy per chunk.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes needed in `pending` before parsing can make progress. */
  private need = 4 + HEADER_BYTES;
  /** Bytes of an oversize frame still to skip. */
  private discard = 0;
  private dead = false;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly validCode: (code: number) => boolean,
    private readonly handler: FrameHandler,
  ) {}

  /** Feeds one chunk. */
  push(chunk: Buffer): void {
    if (this.dead) return;
    if (this.discard > 0) {
      const skip = Math.min(this.discard, chunk.length);
      this.discard -= skip;
      if (skip === chunk.length) return;
      chunk = chunk.subarray(skip);
    }
    if (this.pendingBytes === 0) {
      this.parse(chunk);
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < this.need) return;
    const joined = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.parse(joined);
  }

  private parse(buf: Buffer): void {
    let off = 0;
    for (;;) {
      if (this.dead) return;
      const left = buf.length - off;
      if (left < 4 + HEADER_BYTES) {
        this.need = 4 + HEADER_BYTES;
        break;
      }
      const length = buf.readUInt32LE(off);
      const code = buf[off + 4];
      if (length < HEADER_BYTES || !this.validCode(code)) {
        this.dead = true;
        this.pending = [];
        this.pendingBytes = 0;
        this.handler.fatal(
          length < HEADER_BYTES ? `frame length ${length} is below the header` : `unknown code ${code}`,
        );
        return;
      }
      const id = buf.readUInt32LE(off + 5);
      if (length > this.maxFrameBytes) {
        this.handler.oversize(code, id, length);
        const total = 4 + length;
        if (left >= total) {
          off += total;
          continue;
        }
        this.discard = total - left;
        return;
      }
      if (left < 4 + length) {
        this.need = 4 + length;
        break;
      }
      this.handler.frame(code, id, buf, off + 4 + HEADER_BYTES, off + 4 + length);
      off += 4 + length;
    }
    if (off < buf.length && !this.dead) {
      this.pending.push(off === 0 ? buf : buf.subarray(off));
      this.pendingBytes = buf.length - off;
    }
  }
}
