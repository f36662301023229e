/**
 * One client connection of the store server: decodes its frames, runs each op against
 * the server's map, and writes replies. Replies produced in one tick are corked into a
 * single writev.
 */
import type { Socket } from 'node:net';
import { StoreError } from '../errors.ts';
import { log } from '../log.ts';
import {
  FieldCursor,
  FrameReader,
  MalformedFrameError,
  Op,
  Status,
  encodeFrame,
  encodeHeaderForValue,
  isOp,
  opName,
} from './protocol.ts';
import type { KeyValueState, Waiter, WaiterSink } from './server-state.ts';

/** Values at least this large are written after their header without a copy. */
const ZERO_COPY_BYTES = 16 * 1024;
/** Values smaller than this are copied out of the receive buffer instead of keeping a view. */
const OWN_COPY_BYTES = 64 * 1024;
const ONE = Buffer.from('1');
const ZERO = Buffer.from('0');
const EMPTY = Buffer.alloc(0);

/** The server side of one client socket. */
export class Connection implements WaiterSink {
  /** Parked requests of this client, by request id (for cancel and disconnect). */
  readonly waiters = new Map<number, Waiter>();
  private readonly reader: FrameReader;
  private readonly cursor = new FieldCursor();
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly state: KeyValueState,
    readonly socket: Socket,
    private readonly maxValueBytes: number,
    maxFrameBytes: number,
  ) {
    this.reader = new FrameReader(maxFrameBytes, isOp, {
      frame: (code, id, buf, start, end) => this.onFrame(code, id, buf, start, end),
      oversize: (code, id, length) =>
        this.replyError(
          id,
          `${opName(code)} frame of ${length} bytes exceeds the server's limit of ${maxFrameBytes} bytes`,
        ),
      fatal: (reason) => this.drop(reason),
    });
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    // A vanished or reset client: 'close' follows and the server cleans up.
    socket.on('error', (err) => log('debug', 'store', `client ${this.peer()}: ${err.message}`));
  }

  /** Removes every parked request of this client (it disconnected). */
  dropWaiters(): void {
    for (const w of this.waiters.values()) this.state.unpark(w);
    this.waiters.clear();
  }

  /** A parked request was answered: stop tracking it for cancel and disconnect. */
  answered(w: Waiter): void {
    this.waiters.delete(w.id);
  }

  /** Answers `id` with one value field. */
  replyValue(id: number, value: Buffer): void {
    if (value.length >= ZERO_COPY_BYTES) {
      // Stored values are never mutated, so the reply can point at them.
      this.write(encodeHeaderForValue(Status.ok, id, value.length));
      this.write(value);
    } else {
      this.write(encodeFrame(Status.ok, id, [value])!);
    }
  }

  /** Answers `id` with no fields. */
  replyEmpty(id: number): void {
    this.write(encodeFrame(Status.ok, id, [])!);
  }

  private replyError(id: number, message: string): void {
    this.write(encodeFrame(Status.error, id, [message])!);
  }

  private onFrame(code: number, id: number, buf: Buffer, start: number, end: number): void {
    const c = this.cursor;
    c.reset(buf, start, end);
    try {
      this.run(code, id, c);
    } catch (err) {
      // A malformed field or a bad argument: this request fails, the connection lives on.
      const message = err instanceof Error ? err.message : String(err);
      this.replyError(id, err instanceof MalformedFrameError ? `malformed ${opName(code)} frame: ${message}` : message);
    }
  }

  private run(code: number, id: number, c: FieldCursor): void {
    const state = this.state;
    switch (code) {
      case Op.set:
      case Op.setForReaders: {
        const key = c.string('key');
        const value = this.own(c.bytes('value'));
        const readers = code === Op.setForReaders ? c.integer('readers') : 0;
        if (readers < 0) throw new StoreError(`setForReaders: readers must be >= 0, got ${readers}`);
        state.set(key, value, readers);
        this.replyEmpty(id);
        return;
      }
      case Op.get: {
        const key = c.string('key');
        const value = state.data.get(key);
        if (value !== undefined) {
          this.replyValue(id, value);
          state.countRead(key);
          return;
        }
        const w: Waiter = { sink: this, id, key, keys: null, missing: 1 };
        this.waiters.set(id, w);
        state.park(key, w);
        return;
      }
      case Op.wait: {
        const keys: string[] = [];
        while (c.next()) keys.push(c.buf.toString('utf8', c.start, c.end));
        const missing = keys.filter((k) => !state.data.has(k));
        if (missing.length === 0) {
          this.replyEmpty(id);
          return;
        }
        const w: Waiter = { sink: this, id, key: missing[0], keys: missing, missing: missing.length };
        this.waiters.set(id, w);
        for (const k of missing) state.park(k, w);
        return;
      }
      case Op.cancel: {
        // The client's deadline passed; it has already failed the call. No reply.
        const w = this.waiters.get(id);
        if (w) {
          this.waiters.delete(id);
          state.unpark(w);
        }
        return;
      }
      case Op.add: {
        const key = c.string('key');
        const delta = c.integer('delta');
        const current = state.data.get(key);
        const base = current === undefined ? 0 : Number(current.toString('latin1'));
        if (!Number.isSafeInteger(base)) throw new StoreError(`add: key '${key}' does not hold an integer`);
        const sum = base + delta;
        if (!Number.isSafeInteger(sum)) throw new StoreError(`add: ${base} + ${delta} is beyond 2^53`);
        const next = Buffer.from(String(sum), 'latin1');
        state.set(key, next, 0);
        this.write(encodeFrame(Status.ok, id, [next])!);
        return;
      }
      case Op.compareSet: {
        const key = c.string('key');
        const expected = c.bytes('expected');
        const desired = c.bytes('desired');
        const current = state.data.get(key);
        const matches = current === undefined ? expected.length === 0 : current.equals(expected);
        if (matches) {
          const stored = this.own(desired);
          state.set(key, stored, 0);
          this.replyValue(id, stored);
        } else {
          this.replyValue(id, current ?? expected);
        }
        return;
      }
      case Op.delete:
        this.write(encodeFrame(Status.ok, id, [state.delete(c.string('key')) ? ONE : ZERO])!);
        return;
      case Op.numKeys:
        this.write(encodeFrame(Status.ok, id, [String(state.data.size)])!);
        return;
      case Op.check: {
        let all = true;
        while (c.next()) if (!state.data.has(c.buf.toString('utf8', c.start, c.end))) all = false;
        this.write(encodeFrame(Status.ok, id, [all ? ONE : ZERO])!);
        return;
      }
      default:
        throw new StoreError(`unknown op ${code}`);
    }
  }

  /**
   * A value the map can keep: small values are copied out of the receive buffer, so a
   * few bytes never pin a whole socket chunk; large ones keep their view when it covers
   * most of the buffer (the frame was joined for them alone).
   */
  private own(view: Buffer): Buffer {
    if (view.length > this.maxValueBytes)
      throw new StoreError(`value of ${view.length} bytes exceeds the server's limit of ${this.maxValueBytes} bytes`);
    if (view.length === 0) return EMPTY;
    if (view.length >= OWN_COPY_BYTES && view.length * 2 >= view.buffer.byteLength) return view;
    return Buffer.from(view);
  }

  private write(buf: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    socket.write(buf);
  }

  /** Not frames: tell the client why (id 0 = connection-level) and hang up. */
  private drop(reason: string): void {
    log('warn', 'store', `dropping client ${this.peer()}: ${reason}`);
    this.replyError(0, `protocol error: ${reason}`);
    this.socket.end();
    // A client that does not read its socket must not keep it open.
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  private peer(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }
}
