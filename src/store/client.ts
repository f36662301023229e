/**
 * The store client: one connection, many requests in flight, matched to replies by
 * request id. Requests issued in the same tick leave in one writev. Every call has a
 * deadline owned here: a get or wait past it rejects with StoreTimeoutError naming the
 * key, and the server is told to drop the parked request (a reply that crosses the
 * cancel on the wire is ignored).
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectTimeoutError, InvalidArgumentError, StoreError, StoreTimeoutError } from '../errors.ts';
import { connectBy } from '../net/index.ts';
import { FrameReader, MAX_FRAME_BYTES, Op, Status, encodeFrame, isStatus, opName, type Field } from './protocol.ts';
import { PrefixStore, type Store } from './store.ts';

/** Options of {@link TcpStoreClient.connect}. */
export interface StoreClientOptions {
  host: string;
  port: number;
  /**
   * Deadline of the connect, retries included (the server may not be up yet), and the
   * default deadline of every call. Default 30 000 ms.
   */
  timeoutMs?: number;
}

interface Pending {
  op: number;
  key: string;
  timeoutMs: number;
  resolve: (value: never) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** setTimeout's largest delay; longer deadlines are clamped to it (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A connection to a {@link TcpStoreServer}; implements {@link Store}. */
export class TcpStoreClient implements Store {
  /** Server address. */
  readonly host: string;
  readonly port: number;
  /** Default per-call deadline. */
  readonly timeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: StoreError | null = null;
  private closed: Promise<void> | null = null;
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** The local address of the connection: this host's interface that reaches the server. */
  get localAddress(): string {
    return this.socket.localAddress ?? '127.0.0.1';
  }

  private constructor(
    private readonly socket: Socket,
    host: string,
    port: number,
    timeoutMs: number,
  ) {
    this.host = host;
    this.port = port;
    this.timeoutMs = timeoutMs;
    const reader = new FrameReader(MAX_FRAME_BYTES, isStatus, {
      frame: (code, id, buf, start, end) => this.onReply(code, id, buf, start, end),
      oversize: () => undefined, // unreachable: the limit is the u32 maximum
      fatal: (reason) => this.fail(new StoreError(`store ${this.address()} sent bytes that are not frames: ${reason}`)),
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', (err) =>
      this.fail(new StoreError(`store connection ${this.address()} failed: ${err.message}`, { cause: err })),
    );
    socket.on('close', () => this.fail(new StoreError(`store connection ${this.address()} closed`)));
    // Pending calls hold timers, which keep the process alive while they wait; an idle
    // connection must not (a forgotten client would otherwise hang process exit).
    socket.unref();
  }

  /**
   * Connects, retrying while the server is not up yet, until `timeoutMs` passes
   * (then ConnectTimeoutError naming the address and the last failure).
   */
  static async connect(opts: StoreClientOptions): Promise<TcpStoreClient> {
    const timeoutMs = checkTimeout(opts.timeoutMs ?? 30_000);
    if (typeof opts.host !== 'string' || opts.host === '')
      throw new InvalidArgumentError('host', `must be a non-empty string, got ${String(opts.host)}`);
    if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65_535)
      throw new InvalidArgumentError('port', `must be an integer in [1, 65535], got ${opts.port}`);
    const deadline = performance.now() + timeoutMs;
    let lastRefusal: Error | undefined;
    const timedOut = () =>
      new ConnectTimeoutError(`${opts.host}:${opts.port}`, timeoutMs, 'store connection', lastRefusal);
    let delayMs = 5;
    for (;;) {
      try {
        const socket = await connectBy(opts.host, opts.port, deadline, () => timedOut());
        return new TcpStoreClient(socket, opts.host, opts.port, timeoutMs);
      } catch (err) {
        if (err instanceof ConnectTimeoutError) throw err;
        lastRefusal = err as Error;
        const left = deadline - performance.now();
        if (left <= 0) throw timedOut();
        await sleep(Math.min(delayMs, left));
        delayMs = Math.min(200, delayMs * 2);
      }
    }
  }

  async set(key: string, value: Uint8Array | string, timeoutMs?: number): Promise<void> {
    return this.request(Op.set, key, [checkKey(key), checkValue('value', value)], timeoutMs);
  }

  async setForReaders(key: string, value: Uint8Array | string, readers: number, timeoutMs?: number): Promise<void> {
    if (!Number.isSafeInteger(readers) || readers < 1)
      throw new InvalidArgumentError('readers', `must be a positive integer, got ${readers}`);
    return this.request(Op.setForReaders, key, [checkKey(key), checkValue('value', value), String(readers)], timeoutMs);
  }

  async get(key: string, timeoutMs?: number): Promise<Uint8Array> {
    return this.request(Op.get, key, [checkKey(key)], timeoutMs);
  }

  async wait(keys: string[], timeoutMs?: number): Promise<void> {
    return this.request(Op.wait, keys.join(', '), keys.map(checkKey), timeoutMs);
  }

  async add(key: string, delta: number, timeoutMs?: number): Promise<number> {
    if (!Number.isSafeInteger(delta)) throw new InvalidArgumentError('delta', `must be a safe integer, got ${delta}`);
    return this.request(Op.add, key, [checkKey(key), String(delta)], timeoutMs);
  }

  async compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
    timeoutMs?: number,
  ): Promise<Uint8Array> {
    return this.request(
      Op.compareSet,
      key,
      [checkKey(key), checkValue('expected', expected), checkValue('desired', desired)],
      timeoutMs,
    );
  }

  async delete(key: string, timeoutMs?: number): Promise<boolean> {
    return this.request(Op.delete, key, [checkKey(key)], timeoutMs);
  }

  async check(keys: string[], timeoutMs?: number): Promise<boolean> {
    return this.request(Op.check, keys.join(', '), keys.map(checkKey), timeoutMs);
  }

  async numKeys(timeoutMs?: number): Promise<number> {
    return this.request(Op.numKeys, '', [], timeoutMs);
  }

  withPrefix(prefix: string): Store {
    return new PrefixStore(this, prefix);
  }

  /** Number of calls waiting for a reply. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Closes the connection: pending and later calls reject with StoreError. Requests
   * already written are still delivered. Resolves once the socket is closed; idempotent.
   */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.fail(new StoreError(`store client ${this.address()} was closed`), false);
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    });
    return this.closed;
  }

  private request<T>(op: number, key: string, fields: Field[], timeoutMs = this.timeoutMs): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    try {
      timeoutMs = checkTimeout(timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    const frame = encodeFrame(op, this.nextId, fields);
    if (frame === null)
      return Promise.reject(
        new InvalidArgumentError('value', `a ${opName(op)} of '${key}' does not fit one frame (4 GiB)`),
      );
    const id = this.nextId;
    this.nextId = id === 0xffff_ffff ? 1 : id + 1;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(this.onTimeout, Math.min(timeoutMs, MAX_TIMER_MS), id);
      this.pending.set(id, { op, key, timeoutMs, resolve: resolve as (v: never) => void, reject, timer });
      this.write(frame);
    });
  }

  private readonly onTimeout = (id: number): void => {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.op === Op.get || p.op === Op.wait) this.write(encodeFrame(Op.cancel, id, [])!);
    p.reject(new StoreTimeoutError(p.key, p.timeoutMs, opName(p.op)));
  };

  private onReply(code: number, id: number, buf: Buffer, start: number, end: number): void {
    const p = this.pending.get(id);
    if (!p) {
      // id 0 is the server's notice before it drops this connection; any other unknown
      // id is a late reply to a call that already timed out.
      if (id === 0 && code === Status.error)
        this.fail(new StoreError(`store ${this.address()}: ${firstField(buf, start, end).toString('utf8')}`));
      return;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (code === Status.error) {
      const what = p.key === '' ? opName(p.op) : `${opName(p.op)} of '${p.key}'`;
      p.reject(new StoreError(`store ${what} failed: ${firstField(buf, start, end).toString('utf8')}`));
      return;
    }
    let field: Buffer;
    switch (p.op) {
      case Op.set:
      case Op.setForReaders:
      case Op.wait:
        p.resolve(undefined as never);
        return;
      case Op.get:
      case Op.compareSet:
        p.resolve(firstField(buf, start, end) as never);
        return;
      case Op.add:
      case Op.numKeys:
        field = firstField(buf, start, end);
        p.resolve(Number(field.toString('latin1')) as never);
        return;
      default: // delete, check
        field = firstField(buf, start, end);
        p.resolve((field.length === 1 && field[0] === 0x31) as never);
    }
  }

  private write(frame: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(frame);
  }

  private fail(err: StoreError, destroy = true): void {
    if (this.failure) return;
    this.failure = err;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    if (destroy) this.socket.destroy();
  }

  private address(): string {
    return `${this.host}:${this.port}`;
  }
}

/** The first field of a reply body (empty when there is none). */
function firstField(buf: Buffer, start: number, end: number): Buffer {
  if (end - start < 4) return buf.subarray(start, start);
  const len = buf.readUInt32LE(start);
  return buf.subarray(start + 4, Math.min(end, start + 4 + len));
}

function checkKey(key: string): string {
  if (typeof key !== 'string') throw new InvalidArgumentError('key', `must be a string, got ${typeof key}`);
  return key;
}

function checkValue(argument: string, value: Uint8Array | string): Field {
  if (typeof value === 'string' || value instanceof Uint8Array) return value;
  throw new InvalidArgumentError(
    argument,
    `must be a Uint8Array or a string, got ${Object.prototype.toString.call(value)}`,
  );
}

function checkTimeout(timeoutMs: number): number {
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new InvalidArgumentError('timeoutMs', `must be a positive finite number of milliseconds, got ${timeoutMs}`);
  }
  return timeoutMs;
}
