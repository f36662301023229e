/**
 * The store client: many requests in flight on one connection, matched to replies by
 * id. Every call has a deadline; a `get` past it becomes a StoreTimeoutError naming
 * the key, and the server is told to forget the parked request.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { GroupClosedError, StoreError, StoreTimeoutError } from '../errors.ts';
import { FrameReader, Op, Status, bytesOf, encodeFrame, type Frame } from './protocol.ts';

/** What every store (client or prefixed view) offers. Values are bytes. */
export interface Store {
  set(key: string, value: Uint8Array | string, timeoutMs?: number): Promise<void>;
  /** Waits until `key` exists, up to the deadline. */
  get(key: string, timeoutMs?: number): Promise<Uint8Array>;
  wait(keys: string[], timeoutMs?: number): Promise<void>;
  /** Atomically adds `delta` to an integer value (missing = 0) and returns the result. */
  add(key: string, delta: number, timeoutMs?: number): Promise<number>;
  /** Sets `desired` if the value equals `expected` (or is missing and `expected` is empty); returns the value now held. */
  compareSet(key: string, expected: Uint8Array | string, desired: Uint8Array | string, timeoutMs?: number): Promise<Uint8Array>;
  delete(key: string, timeoutMs?: number): Promise<boolean>;
  check(keys: string[], timeoutMs?: number): Promise<boolean>;
  numKeys(timeoutMs?: number): Promise<number>;
  /** A view of this store whose keys are prefixed with `prefix/`. */
  withPrefix(prefix: string): Store;
}

/** Options of {@link TcpStoreClient.connect}. */
export interface StoreClientOptions {
  host: string;
  port: number;
  /** Connect deadline (retrying while the server comes up) and default per-call deadline. Default 30 000. */
  timeoutMs?: number;
}

interface Pending {
  key: string;
  op: string;
  resolve: (fields: Buffer[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

const decoder = new TextDecoder();

/** A connection to a {@link TcpStoreServer}. */
export class TcpStoreClient implements Store {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  private readonly socket: Socket;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | null = null;

  private constructor(socket: Socket, opts: StoreClientOptions) {
    this.socket = socket;
    this.host = opts.host;
    this.port = opts.port;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    const reader = new FrameReader(2 ** 31);
    socket.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.fail(new StoreError(`bad reply from store ${this.host}:${this.port}: ${(err as Error).message}`));
        return;
      }
      for (const f of frames) this.onReply(f);
    });
    socket.on('error', (err) => this.fail(new StoreError(`store connection ${this.host}:${this.port} failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new StoreError(`store connection ${this.host}:${this.port} closed`)));
  }

  /** Connects, retrying until the server accepts or the deadline passes. */
  static async connect(opts: StoreClientOptions): Promise<TcpStoreClient> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = performance.now() + timeoutMs;
    let delayMs = 5;
    for (;;) {
      try {
        const socket = await openSocket(opts.host, opts.port, Math.max(1, deadline - performance.now()));
        return new TcpStoreClient(socket, opts);
      } catch (err) {
        if (performance.now() + delayMs > deadline) {
          throw new StoreError(`could not connect to store ${opts.host}:${opts.port} within ${timeoutMs} ms: ${(err as Error).message}`, { cause: err });
        }
        await sleep(delayMs);
        delayMs = Math.min(200, delayMs * 2);
      }
    }
  }

  set(key: string, value: Uint8Array | string, timeoutMs?: number): Promise<void> {
    return this.request(Op.set, key, [bytesOf(key), bytesOf(value)], timeoutMs).then(() => undefined);
  }

  get(key: string, timeoutMs?: number): Promise<Uint8Array> {
    return this.request(Op.get, key, [bytesOf(key)], timeoutMs).then((f) => f[0]);
  }

  async wait(keys: string[], timeoutMs?: number): Promise<void> {
    await Promise.all(keys.map((k) => this.get(k, timeoutMs)));
  }

  add(key: string, delta: number, timeoutMs?: number): Promise<number> {
    return this.request(Op.add, key, [bytesOf(key), bytesOf(String(delta))], timeoutMs).then((f) => Number(decoder.decode(f[0])));
  }

  compareSet(key: string, expected: Uint8Array | string, desired: Uint8Array | string, timeoutMs?: number): Promise<Uint8Array> {
    return this.request(Op.compareSet, key, [bytesOf(key), bytesOf(expected), bytesOf(desired)], timeoutMs).then((f) => f[0]);
  }

  delete(key: string, timeoutMs?: number): Promise<boolean> {
    return this.request(Op.delete, key, [bytesOf(key)], timeoutMs).then((f) => f[0][0] === 1);
  }

  check(keys: string[], timeoutMs?: number): Promise<boolean> {
    return this.request(Op.check, keys.join(','), keys.map(bytesOf), timeoutMs).then((f) => f[0][0] === 1);
  }

  numKeys(timeoutMs?: number): Promise<number> {
    return this.request(Op.numKeys, '', [], timeoutMs).then((f) => Number(decoder.decode(f[0])));
  }

  withPrefix(prefix: string): Store {
    return new PrefixStore(this, prefix);
  }

  /** Closes the connection; pending calls reject with GroupClosedError. Idempotent. */
  close(): void {
    this.fail(new GroupClosedError(`store client ${this.host}:${this.port} was closed`));
  }

  private request(op: number, key: string, fields: Uint8Array[], timeoutMs = this.timeoutMs): Promise<Buffer[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return new Promise<Buffer[]>((resolve, reject) => {
      const entry: Pending = { key, op: opName(op), resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this.pending.delete(id);
        if (op === Op.get) this.socket.write(encodeFrame(Op.cancel, id, [bytesOf(key)]));
        reject(new StoreTimeoutError(key, timeoutMs, opName(op)));
      }, timeoutMs);
      this.pending.set(id, entry);
      this.socket.write(encodeFrame(op, id, fields));
    });
  }

  private onReply({ code, id, fields }: Frame): void {
    const entry = this.pending.get(id);
    if (!entry) {
      // id 0 is the server's notice before it drops a misbehaving client.
      if (id === 0 && code === Status.error) this.fail(new StoreError(decoder.decode(fields[0] ?? new Uint8Array())));
      return; // a late reply to a request that already timed out
    }
    this.pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    if (code === Status.ok) entry.resolve(fields);
    else entry.reject(new StoreError(`store ${entry.op} of '${entry.key}' failed: ${decoder.decode(fields[0] ?? new Uint8Array())}`));
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const entry of this.pending.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(err);
    }
    this.pending.clear();
    this.socket.destroy();
  }
}

/** Keys of `inner` under `prefix/`. */
export class PrefixStore implements Store {
  constructor(private readonly inner: Store, readonly prefix: string) {}
  private k(key: string): string {
    return `${this.prefix}/${key}`;
  }
  set(key: string, value: Uint8Array | string, timeoutMs?: number) { return this.inner.set(this.k(key), value, timeoutMs); }
  get(key: string, timeoutMs?: number) { return this.inner.get(this.k(key), timeoutMs); }
  wait(keys: string[], timeoutMs?: number) { return this.inner.wait(keys.map((k) => this.k(k)), timeoutMs); }
  add(key: string, delta: number, timeoutMs?: number) { return this.inner.add(this.k(key), delta, timeoutMs); }
  compareSet(key: string, expected: Uint8Array | string, desired: Uint8Array | string, timeoutMs?: number) {
    return this.inner.compareSet(this.k(key), expected, desired, timeoutMs);
  }
  delete(key: string, timeoutMs?: number) { return this.inner.delete(this.k(key), timeoutMs); }
  check(keys: string[], timeoutMs?: number) { return this.inner.check(keys.map((k) => this.k(k)), timeoutMs); }
  numKeys(timeoutMs?: number) { return this.inner.numKeys(timeoutMs); }
  withPrefix(prefix: string): Store { return new PrefixStore(this, prefix); }
}

function opName(op: number): string {
  return Object.entries(Op).find(([, v]) => v === op)?.[0] ?? `op${op}`;
}

function openSocket(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connect timed out'));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}
