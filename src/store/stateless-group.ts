/**
 * vLLM's StatelessProcessGroup (vllm/distributed/utils.py): object exchange among `worldSize` ranks
 * through a store, without any global registration. Objects travel as node:v8
 * serialize/deserialize bytes, so typed arrays, Maps, Sets, Dates and BigInts survive.
 *
 * Deliberate changes from vLLM, each for a reason:
 * - Point-to-point keys name the sender: `send_to/{dst}/{src}/{n}`. vLLM writes
 *   `send_to/{dst}/{n}`, so two ranks sending to one receiver overwrite each other's
 *   messages (StatelessProcessGroup.send_obj). Both sides are ours, so both change together.
 * - Messages are written with `setForReaders`: the server deletes a value once all its
 *   readers have it (1 for send, worldSize-1 for broadcast), so a broadcast every step
 *   does not grow the store for an hour. Writer-side expiry stays, for values nobody read.
 * - The barrier has its own keys and does not consume broadcast counters (vLLM's old
 *   barrier did); it is the arrive/decide/depart barrier of ./barrier.ts.
 * - allGatherObj issues all its reads at once (one round trip, not worldSize).
 */
import { deserialize, serialize } from 'node:v8';
import { GroupClosedError, InvalidArgumentError } from '../errors.ts';
import { log } from '../log.ts';
import { storeBarrier } from './barrier.ts';
import { TcpStoreClient } from './client.ts';
import { DirectChannels } from './direct-p2p.ts';
import { ExpiryQueue } from './expiry.ts';
import { TcpStoreServer } from './server.ts';
import { listenInThread } from './server-thread.ts';
import type { Store } from './store.ts';

/** Options of {@link StatelessProcessGroup.fromStore}. */
export interface FromStoreOptions {
  /** Deadline of every store wait (recv, broadcast, barrier). Default 300 000 ms, as vLLM. */
  storeTimeoutMs?: number;
  /** Values this rank wrote are deleted after this long if unread. Default 3600 s. */
  dataExpirationSeconds?: number;
}

/** Options of {@link StatelessProcessGroup.create}. */
export interface StatelessGroupOptions extends FromStoreOptions {
  /** Where rank 0 serves the store and every rank connects. */
  host: string;
  /** Port of the store. 0 (an ephemeral port) only with `worldSize` 1: peers could not find it. */
  port: number;
  rank: number;
  worldSize: number;
  /**
   * Rank 0 serves the store from a worker thread (~0.1 s to start) instead of its own
   * event loop. Use it when rank 0 makes blocking native calls that wait for a peer
   * (NCCL point-to-point connection setup) while that peer needs the store.
   */
  storeInThread?: boolean;
  /**
   * sendObj/recvObj over direct TCP connections between the ranks (./direct-p2p.ts);
   * the store then carries only their addresses, broadcasts and barriers. For a stream
   * of small messages between two ranks (the KV pipe's metadata). Every rank of the
   * group must pass the same value.
   */
  directPointToPoint?: boolean;
}

/** A group of `worldSize` ranks that exchange objects through a store. */
export class StatelessProcessGroup {
  /** This rank, in [0, worldSize). */
  readonly rank: number;
  readonly worldSize: number;
  /** The store the group uses (a prefixed view when built by the orchestrator). */
  readonly store: Store;
  readonly storeTimeoutMs: number;
  readonly dataExpirationSeconds: number;
  private readonly sendDstCounter: number[];
  private readonly recvSrcCounter: number[];
  private broadcastSendCounter = 0;
  private readonly broadcastRecvSrcCounter: number[];
  private barrierCounter = 0;
  private readonly entries = new ExpiryQueue();
  private owned: { client: TcpStoreClient; server: { close(): Promise<void> } | null } | null = null;
  /** Rank whose process serves the store (rank 0 after create), or null. */
  private hostRank: number | null = null;
  private closing: Promise<void> | null = null;
  /** Direct connections for sendObj/recvObj (create with directPointToPoint), else null. */
  private direct: DirectChannels | null = null;

  private constructor(store: Store, rank: number, worldSize: number, opts: FromStoreOptions) {
    this.store = store;
    this.rank = rank;
    this.worldSize = worldSize;
    this.storeTimeoutMs = opts.storeTimeoutMs ?? 300_000;
    this.dataExpirationSeconds = opts.dataExpirationSeconds ?? 3600;
    this.sendDstCounter = new Array<number>(worldSize).fill(0);
    this.recvSrcCounter = new Array<number>(worldSize).fill(0);
    this.broadcastRecvSrcCounter = new Array<number>(worldSize).fill(0);
  }

  /**
   * A group over an existing store (the orchestrator passes a per-group prefixed view).
   * The group does not own the store: close() leaves it open.
   */
  static fromStore(store: Store, rank: number, worldSize: number, opts: FromStoreOptions = {}): StatelessProcessGroup {
    checkGroup(rank, worldSize);
    checkOptions(opts);
    return new StatelessProcessGroup(store, rank, worldSize, opts);
  }

  /**
   * vLLM's `StatelessProcessGroup.create`: rank 0 serves a store on host:port and every
   * rank (rank 0 included) connects to it, retrying until `storeTimeoutMs`.
   */
  static async create(opts: StatelessGroupOptions): Promise<StatelessProcessGroup> {
    checkGroup(opts.rank, opts.worldSize);
    checkOptions(opts);
    if (typeof opts.host !== 'string' || opts.host === '')
      throw new InvalidArgumentError('host', `must be a non-empty string, got ${String(opts.host)}`);
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65_535)
      throw new InvalidArgumentError('port', `must be an integer in [0, 65535], got ${opts.port}`);
    if (opts.port === 0 && opts.worldSize > 1) {
      throw new InvalidArgumentError(
        'port',
        `0 (an ephemeral port) works only with worldSize 1; with ${opts.worldSize} ranks the others could not find the store`,
      );
    }
    const listen = opts.storeInThread ? listenInThread : TcpStoreServer.listen.bind(TcpStoreServer);
    const server = opts.rank === 0 ? await listen({ host: opts.host, port: opts.port }) : null;
    let client: TcpStoreClient;
    try {
      client = await TcpStoreClient.connect({
        host: opts.host,
        port: server?.port ?? opts.port,
        timeoutMs: opts.storeTimeoutMs ?? 300_000,
      });
    } catch (err) {
      await server?.close();
      throw err;
    }
    const group = new StatelessProcessGroup(client, opts.rank, opts.worldSize, opts);
    group.owned = { client, server };
    group.hostRank = 0;
    if (opts.directPointToPoint && opts.worldSize > 1) {
      try {
        group.direct = await DirectChannels.open(client, opts.rank, client.localAddress, group.storeTimeoutMs);
      } catch (err) {
        await group.close();
        throw err;
      }
    }
    return group;
  }

  /** Sends `obj` to rank `dst` (not this rank). */
  async sendObj(obj: unknown, dst: number): Promise<void> {
    this.checkPeer('dst', dst);
    const bytes = encode(obj);
    this.checkOpen();
    if (this.direct) return this.direct.send(dst, bytes);
    const key = `send_to/${dst}/${this.rank}/${this.sendDstCounter[dst]++}`;
    await this.write(key, bytes, 1);
  }

  /**
   * Receives the next object rank `src` sent to this rank, waiting up to `timeoutMs`
   * (default: the store deadline).
   */
  async recvObj(src: number, timeoutMs = this.storeTimeoutMs): Promise<unknown> {
    this.checkPeer('src', src);
    if (!(timeoutMs > 0))
      throw new InvalidArgumentError('timeoutMs', `must be a positive number of milliseconds, got ${timeoutMs}`);
    this.checkOpen();
    if (this.direct) return deserialize(await this.direct.recv(src, timeoutMs));
    const n = this.recvSrcCounter[src]++;
    return this.read(`send_to/${this.rank}/${src}/${n}`, this.recvSrcCounter, src, n, timeoutMs);
  }

  /**
   * Broadcasts `obj` from rank `src`. The source gets its ORIGINAL object back, not a
   * copy (as StatelessProcessGroup.broadcast_obj); the others get a deserialized copy.
   */
  async broadcastObj<T>(obj: T | null | undefined, src: number): Promise<T> {
    this.checkRank('src', src);
    if (this.rank === src) {
      const bytes = this.worldSize > 1 ? encode(obj) : null;
      this.checkOpen();
      const key = `broadcast_from/${src}/${this.broadcastSendCounter++}`;
      if (bytes) await this.write(key, bytes, this.worldSize - 1);
      return obj as T;
    }
    this.checkOpen();
    const n = this.broadcastRecvSrcCounter[src]++;
    return (await this.read(`broadcast_from/${src}/${n}`, this.broadcastRecvSrcCounter, src, n)) as T;
  }

  /** Every rank's `obj`, in rank order (this rank's slot holds the original object). */
  async allGatherObj<T>(obj: T): Promise<T[]> {
    // All broadcasts start in rank order in this tick (counters are taken synchronously),
    // then travel pipelined on the connection: one round trip instead of worldSize.
    const parts: Promise<T>[] = [];
    for (let i = 0; i < this.worldSize; i++) parts.push(this.broadcastObj<T>(i === this.rank ? obj : null, i));
    return Promise.all(parts);
  }

  /**
   * Returns once every rank has reached this barrier. A rank that does not arrive within
   * `timeoutMs` (default: the store deadline) makes the others reject with
   * StoreTimeoutError naming the barrier and how many ranks arrived.
   */
  async barrier(timeoutMs = this.storeTimeoutMs): Promise<void> {
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs))
      throw new InvalidArgumentError('timeoutMs', `must be a positive finite number, got ${timeoutMs}`);
    this.checkOpen();
    const n = this.barrierCounter++;
    if (this.worldSize === 1) return;
    await storeBarrier(this.store, `barrier/${n}`, {
      rank: this.rank,
      worldSize: this.worldSize,
      timeoutMs,
      hostRank: this.hostRank,
    });
  }

  /**
   * Deletes the keys this rank wrote more than `dataExpirationSeconds` ago (vLLM runs
   * this before each write; so do we, without waiting for it). Resolves with the number
   * of keys it asked the store to delete.
   */
  async expireData(): Promise<number> {
    const keys = this.entries.popOlderThan(Date.now() - this.dataExpirationSeconds * 1000);
    // Most are gone already (their readers consumed them); the delete is then a no-op.
    await Promise.all(keys.map((k) => this.store.delete(k)));
    return keys.length;
  }

  /**
   * Closes the group. A group made by create() closes its connection and, on rank 0,
   * the store server; a group made by fromStore() leaves the store open. Later calls
   * reject with GroupClosedError. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.direct?.close();
      if (!this.owned) return;
      await this.owned.client.close();
      await this.owned.server?.close();
    })();
    return this.closing;
  }

  private async write(key: string, bytes: Uint8Array, readers: number): Promise<void> {
    if (this.entries.oldestMs() < Date.now() - this.dataExpirationSeconds * 1000) {
      this.expireData().catch((err: Error) =>
        log('debug', 'store', `expiry before writing ${key} failed: ${err.message}`),
      );
    }
    this.entries.push(key, Date.now());
    await this.store.setForReaders(key, bytes, readers, this.storeTimeoutMs);
  }

  /**
   * Reads `key` (counter value `n` of `counters[peer]`). When the read fails and no later
   * read was issued meanwhile, the counter steps back, so a retry reads the same message.
   */
  private async read(
    key: string,
    counters: number[],
    peer: number,
    n: number,
    timeoutMs = this.storeTimeoutMs,
  ): Promise<unknown> {
    let value: Uint8Array;
    try {
      value = await this.store.get(key, timeoutMs);
    } catch (err) {
      if (counters[peer] === n + 1) counters[peer] = n;
      throw err;
    }
    return deserialize(value);
  }

  private checkOpen(): void {
    if (this.closing)
      throw new GroupClosedError(`StatelessProcessGroup rank ${this.rank} of ${this.worldSize} is closed`);
  }

  private checkRank(argument: string, r: number): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.worldSize) {
      throw new InvalidArgumentError(argument, `rank ${r} is out of range [0, ${this.worldSize})`);
    }
  }

  private checkPeer(argument: string, r: number): void {
    this.checkRank(argument, r);
    if (r === this.rank)
      throw new InvalidArgumentError(argument, `rank ${r} is this rank; a rank cannot send to or receive from itself`);
  }
}

function encode(obj: unknown): Uint8Array {
  try {
    return serialize(obj);
  } catch (err) {
    throw new InvalidArgumentError('obj', `cannot be serialized with node:v8 (${(err as Error).message})`);
  }
}

function checkGroup(rank: number, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new InvalidArgumentError('worldSize', `must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
    throw new InvalidArgumentError('rank', `${rank} is out of range [0, ${worldSize})`);
}

function checkOptions(opts: FromStoreOptions): void {
  const t = opts.storeTimeoutMs;
  if (t !== undefined && (!(t > 0) || !Number.isFinite(t)))
    throw new InvalidArgumentError('storeTimeoutMs', `must be a positive finite number, got ${t}`);
  const e = opts.dataExpirationSeconds;
  if (e !== undefined && (!(e >= 0) || !Number.isFinite(e)))
    throw new InvalidArgumentError('dataExpirationSeconds', `must be a non-negative finite number, got ${e}`);
}
