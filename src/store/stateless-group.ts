/**
 * vLLM's StatelessProcessGroup (vllm-spec §5): object collectives over the store,
 * without any global registration. Objects travel as node:v8 serialized bytes, so
 * typed arrays, Maps and BigInts survive.
 *
 * Two deliberate changes from vLLM:
 * - point-to-point keys name the sender (`send_to/{dst}/{src}/{n}`): vLLM's
 *   `send_to/{dst}/{n}` collides when two ranks send to one (vllm-spec §14 item 11);
 * - a value is deleted once every reader has it (the last reader deletes), so a
 *   broadcast every step does not grow the store; writer-side expiry remains as a net.
 */
import { deserialize, serialize } from 'node:v8';
import { InvalidArgumentError, StoreTimeoutError } from '../errors.ts';
import { log } from '../log.ts';
import { TcpStoreClient, type Store } from './client.ts';
import { TcpStoreServer } from './server.ts';

/** Options of {@link StatelessProcessGroup.create}. */
export interface StatelessGroupOptions {
  host: string;
  port: number;
  rank: number;
  worldSize: number;
  /** Deadline of every store wait. Default 300 000 ms, as vLLM. */
  storeTimeoutMs?: number;
  /** Writer-side expiry of values nobody consumed. Default 3600 s. */
  dataExpirationSeconds?: number;
}

/** Options of {@link StatelessProcessGroup.fromStore}. */
export interface FromStoreOptions {
  storeTimeoutMs?: number;
  dataExpirationSeconds?: number;
}

/** A group of `worldSize` ranks that exchange objects through a store. */
export class StatelessProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly store: Store;
  readonly storeTimeoutMs: number;
  private readonly expirationMs: number;
  private readonly sendCounters: number[];
  private readonly recvCounters: number[];
  private broadcastSendCounter = 0;
  private readonly broadcastRecvCounters: number[];
  private barrierCounter = 0;
  private readonly written: { key: string; at: number }[] = [];
  private owned: { client?: TcpStoreClient; server?: TcpStoreServer } = {};

  private constructor(store: Store, rank: number, worldSize: number, opts: FromStoreOptions) {
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new InvalidArgumentError('worldSize', `must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new InvalidArgumentError('rank', `${rank} is out of range [0, ${worldSize})`);
    this.store = store;
    this.rank = rank;
    this.worldSize = worldSize;
    this.storeTimeoutMs = opts.storeTimeoutMs ?? 300_000;
    this.expirationMs = (opts.dataExpirationSeconds ?? 3600) * 1000;
    this.sendCounters = new Array<number>(worldSize).fill(0);
    this.recvCounters = new Array<number>(worldSize).fill(0);
    this.broadcastRecvCounters = new Array<number>(worldSize).fill(0);
  }

  /** A group over an existing store connection (the orchestrator passes a prefixed view). */
  static fromStore(store: Store, rank: number, worldSize: number, opts: FromStoreOptions = {}): StatelessProcessGroup {
    return new StatelessProcessGroup(store, rank, worldSize, opts);
  }

  /** Rank 0 serves a store on host:port; every rank connects to it. */
  static async create(opts: StatelessGroupOptions): Promise<StatelessProcessGroup> {
    if (!Number.isInteger(opts.rank) || opts.rank < 0 || opts.rank >= opts.worldSize) {
      throw new InvalidArgumentError('rank', `${opts.rank} is out of range [0, ${opts.worldSize})`);
    }
    const timeoutMs = opts.storeTimeoutMs ?? 300_000;
    const server = opts.rank === 0 ? await TcpStoreServer.listen({ host: opts.host, port: opts.port }) : undefined;
    const client = await TcpStoreClient.connect({ host: opts.host, port: server?.port ?? opts.port, timeoutMs });
    const group = new StatelessProcessGroup(client, opts.rank, opts.worldSize, { storeTimeoutMs: timeoutMs, dataExpirationSeconds: opts.dataExpirationSeconds });
    group.owned = { client, server };
    return group;
  }

  /** Sends `obj` to `dst`. */
  async sendObj(obj: unknown, dst: number): Promise<void> {
    this.checkPeer('dst', dst);
    const key = `send_to/${dst}/${this.rank}/${this.sendCounters[dst]++}`;
    await this.write(key, obj);
  }

  /** Receives the next object `src` sent to this rank. */
  async recvObj(src: number): Promise<unknown> {
    this.checkPeer('src', src);
    const key = `send_to/${this.rank}/${src}/${this.recvCounters[src]++}`;
    const value = await this.store.get(key, this.storeTimeoutMs);
    this.consume(key, 1);
    return deserialize(value);
  }

  /** Broadcasts from `src`; the source gets its original object back (vllm-spec §14 item 12). */
  async broadcastObj<T>(obj: T | null | undefined, src: number): Promise<T> {
    this.checkRank('src', src);
    if (this.rank === src) {
      const key = `broadcast_from/${src}/${this.broadcastSendCounter++}`;
      if (this.worldSize > 1) await this.write(key, obj);
      return obj as T;
    }
    const key = `broadcast_from/${src}/${this.broadcastRecvCounters[src]++}`;
    const value = await this.store.get(key, this.storeTimeoutMs);
    this.consume(key, this.worldSize - 1);
    return deserialize(value) as T;
  }

  /** Every rank's `obj`, in rank order. */
  async allGatherObj<T>(obj: T): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < this.worldSize; i++) out.push(await this.broadcastObj<T>(i === this.rank ? obj : null, i));
    return out;
  }

  /**
   * Waits until every rank reached this barrier. Arrive: an atomic counter; the last
   * to arrive publishes `done`, the others wait for it with the deadline; depart: the
   * last to leave deletes the keys. A rank that never arrives makes the others fail with
   * StoreTimeoutError naming the barrier.
   */
  async barrier(timeoutMs = this.storeTimeoutMs): Promise<void> {
    if (this.worldSize === 1) return;
    const base = `barrier/${this.barrierCounter++}`;
    const arrived = await this.store.add(`${base}/arrive`, 1, timeoutMs);
    if (arrived === this.worldSize) await this.store.set(`${base}/done`, '1', timeoutMs);
    else {
      try {
        await this.store.get(`${base}/done`, timeoutMs);
      } catch (err) {
        if (err instanceof StoreTimeoutError) {
          throw new StoreTimeoutError(`${base}/done (${arrived} of ${this.worldSize} ranks arrived)`, timeoutMs, 'barrier');
        }
        throw err;
      }
    }
    const departed = await this.store.add(`${base}/depart`, 1, timeoutMs);
    if (departed === this.worldSize) {
      await Promise.all([this.store.delete(`${base}/arrive`), this.store.delete(`${base}/done`), this.store.delete(`${base}/depart`)]);
    }
  }

  /** Deletes values this rank wrote that nobody consumed within the expiry. */
  expireData(): void {
    const cutoff = Date.now() - this.expirationMs;
    while (this.written.length > 0 && this.written[0].at < cutoff) {
      const { key } = this.written.shift()!;
      this.store.delete(key).catch(() => undefined);
    }
  }

  /** Closes the store connection and, on the rank that started it, the server. */
  async close(): Promise<void> {
    this.owned.client?.close();
    await this.owned.server?.close();
  }

  private async write(key: string, obj: unknown): Promise<void> {
    this.expireData();
    await this.store.set(key, serialize(obj), this.storeTimeoutMs);
    this.written.push({ key, at: Date.now() });
    if (this.written.length > 4096) this.written.shift();
  }

  /** The last of `readers` deletes the value; off the critical path. */
  private consume(key: string, readers: number): void {
    const done = readers === 1 ? this.store.delete(key) : this.store.add(`${key}/reads`, 1).then((n) => {
      if (n === readers) return Promise.all([this.store.delete(key), this.store.delete(`${key}/reads`)]);
      return undefined;
    });
    done.catch((err: Error) => log('debug', 'store', `cleanup of ${key} failed: ${err.message}`));
  }

  private checkRank(argument: string, r: number): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.worldSize) throw new InvalidArgumentError(argument, `rank ${r} is out of range [0, ${this.worldSize})`);
  }

  private checkPeer(argument: string, r: number): void {
    this.checkRank(argument, r);
    if (r === this.rank) throw new InvalidArgumentError(argument, `rank ${r} cannot send to or receive from itself`);
  }
}
