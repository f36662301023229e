/**
 * The coordinator: `launchGroup()` starts one actor per local rank, and the returned
 * {@link Group} calls functions in them. A rank that dies fails every pending and
 * later call with RankFailedError and makes the others abort; a call past its
 * deadline fails with CallTimeoutError; shutdown() leaves no process, thread or port.
 */
import { EventEmitter } from 'eventemitter3';
import { nanoid } from 'nanoid';
import { cuda, cudaDeviceCount, nccl, ncclAvailable } from '../../native/index.ts';
import {
  CallTimeoutError, GroupClosedError, InvalidArgumentError, RankFailedError, errorFromWire, errorToWire,
} from '../errors.ts';
import { log } from '../log.ts';
import { TcpStoreServer } from '../store/index.ts';
import { resolveOptions, type LaunchOptions, type ResolvedOptions } from './options.ts';
import { dispatch, type FromRank, type RankInit } from './protocol.ts';
import { spawnProcess, spawnThread, type RankChannel } from './spawn.ts';

/** Payload of the `rank-exit` event. */
export interface RankExitEvent {
  rank: number;
  code: number | null;
  signal: string | null;
  /** The failure the exit caused (absent for exits during shutdown). */
  error?: RankFailedError;
}

interface GroupEvents {
  'rank-exit': [RankExitEvent];
  log: [{ rank: number; level: string; message: string }];
  error: [Error];
}

interface PendingCall {
  rank: number;
  fn: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface Actor {
  rank: number;
  channel: RankChannel;
  alive: boolean;
  exited: Promise<void>;
}

/** A launched group of rank actors. */
export class Group extends EventEmitter<GroupEvents> {
  readonly worldSize: number;
  readonly mode: 'process' | 'thread';
  readonly backend: 'nccl' | 'cpu';
  /** Global ranks started by this coordinator. */
  readonly ranks: readonly number[];
  /** Where the job's store listens. */
  readonly storeAddress: { host: string; port: number };
  /** OS process id of each local rank (the coordinator's own pid in thread mode). */
  readonly pids: readonly number[];
  private readonly actors = new Map<number, Actor>();
  private readonly pending = new Map<string, PendingCall>();
  private readonly timeoutMs: number;
  private failure: Error | null = null;
  private closing: Promise<void> | null = null;

  /** @internal built by launchGroup */
  constructor(opts: ResolvedOptions, backend: 'nccl' | 'cpu', actors: Actor[], private readonly server: TcpStoreServer | null, storePort: number) {
    super();
    this.worldSize = opts.worldSize;
    this.mode = opts.mode;
    this.backend = backend;
    this.timeoutMs = opts.timeoutMs;
    this.ranks = actors.map((a) => a.rank);
    this.pids = actors.map((a) => a.channel.pid);
    this.storeAddress = { host: opts.masterAddr, port: storePort };
    for (const a of actors) this.actors.set(a.rank, a);
  }

  /** Calls `fn(ctx, ...args)` in rank `rank`. */
  call<T = unknown>(rank: number, fn: string, ...args: unknown[]): Promise<T> {
    return this.callWithOptions<T>(rank, fn, args);
  }

  /** Calls `fn(ctx, ...args)` in every local rank; results in rank order. */
  callAll<T = unknown>(fn: string, ...args: unknown[]): Promise<T[]> {
    return Promise.all(this.ranks.map((r) => this.callWithOptions<T>(r, fn, args)));
  }

  /** `call` with per-call options: `timeoutMs` overrides the group's deadline. */
  callWithOptions<T = unknown>(rank: number, fn: string, args: unknown[], opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new GroupClosedError('the group was shut down'));
    const actor = this.actors.get(rank);
    if (!actor) return Promise.reject(new InvalidArgumentError('rank', `rank ${rank} is not one of this coordinator's ranks [${this.ranks.join(', ')}]`));
    if (typeof fn !== 'string') return Promise.reject(new InvalidArgumentError('fn', 'expected the name of an exported function'));
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const id = nanoid();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CallTimeoutError(rank, fn, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { rank, fn, resolve: resolve as (v: unknown) => void, reject, timer });
      actor.channel.send({ kind: 'call', id, fn, args });
    });
  }

  /** Stops every actor (gracefully, then by force) and the store; idempotent. */
  shutdown(graceMs = 5_000): Promise<void> {
    this.closing ??= this.close(graceMs);
    return this.closing;
  }

  /** @internal */
  onRankMessage(rank: number, msg: FromRank): void {
    dispatch(msg, {
      result: ({ id, value }) => this.settle(id, (p) => p.resolve(value)),
      error: ({ id, error }) => this.settle(id, (p) => p.reject(errorFromWire(error))),
      log: ({ level, message }) => this.emit('log', { rank, level, message }),
      ready: () => undefined,
      fatal: () => undefined,
    });
  }

  /** @internal */
  onRankExit(rank: number, code: number | null, signal: string | null): void {
    const actor = this.actors.get(rank);
    if (actor) actor.alive = false;
    if (this.closing) {
      this.emit('rank-exit', { rank, code, signal });
      return;
    }
    const error = new RankFailedError(rank, code, signal);
    log('warn', 'coordinator', error.message);
    if (!this.failure) {
      this.failure = error;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(error);
      }
      this.pending.clear();
      for (const other of this.actors.values()) if (other.alive) other.channel.send({ kind: 'abort', error: errorToWire(error) });
    }
    this.emit('rank-exit', { rank, code, signal, error });
  }

  private settle(id: string, fn: (p: PendingCall) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    fn(p);
  }

  private async close(graceMs: number): Promise<void> {
    const closed = new GroupClosedError('the group was shut down');
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(closed);
    }
    this.pending.clear();
    await stopActors([...this.actors.values()], graceMs);
    await this.server?.close();
  }
}

/** Asks actors to stop, then kills those still alive after `graceMs`; resolves when all are gone. */
async function stopActors(actors: Actor[], graceMs: number): Promise<void> {
  for (const a of actors) if (a.alive) a.channel.send({ kind: 'shutdown' });
  const all = Promise.all(actors.map((a) => a.exited));
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
  if ((await Promise.race([all, grace])) === 'timeout') for (const a of actors) if (a.alive) a.channel.kill();
  clearTimeout(timer);
  await all;
}

function resolveBackend(opts: ResolvedOptions): 'nccl' | 'cpu' {
  const gpus = cudaDeviceCount();
  const needed = Math.max(...opts.devices) + 1;
  if (opts.backend === 'cpu') return 'cpu';
  if (opts.backend === 'auto') return gpus >= needed && ncclAvailable() ? 'nccl' : 'cpu';
  if (gpus < needed) throw new InvalidArgumentError('devices', `backend 'nccl' needs cuda:${needed - 1}, but ${gpus} CUDA devices are visible`);
  nccl(); // throws LibraryNotFoundError listing every path tried
  return 'nccl';
}

/**
 * Launches this node's rank actors and resolves once every one of them has connected
 * to the store and built its groups and communicators. See DESIGN.md for the options.
 */
export async function launchGroup(options: LaunchOptions): Promise<Group> {
  const opts = resolveOptions(options);
  const backend = resolveBackend(opts);
  const rankEnv: Record<string, string> = { ...opts.env, GPUGROUP_NODE_ID: String(opts.nodeRank), UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '8' };
  if (backend === 'nccl') {
    // Resolve the libraries once here: ranks skip discovery, and in thread mode the main
    // thread holding them keeps a worker's exit from unloading them (notes §0 item 3).
    rankEnv.GPUGROUP_NCCL_SO_PATH ??= nccl().path;
    rankEnv.GPUGROUP_CUDART_SO_PATH ??= cuda().path;
  }
  const server = opts.nodeRank === 0 ? await TcpStoreServer.listen({ host: opts.masterAddr, port: opts.masterPort }) : null;
  const storePort = server?.port ?? opts.masterPort;
  const actors: Actor[] = [];
  const fatal = new Map<number, Error>();
  let startupFailure: Error | null = null;
  let group: Group | null = null;
  let failStartup: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (failStartup = reject));
  failed.catch(() => undefined);
  const readies: Promise<void>[] = [];
  for (let localRank = 0; localRank < opts.nprocPerNode; localRank++) {
    const rank = opts.nodeRank * opts.nprocPerNode + localRank;
    const channel = opts.mode === 'process' ? spawnProcess(rankEnv) : spawnThread(rankEnv);
    let markExited: () => void = () => undefined;
    const actor: Actor = { rank, channel, alive: true, exited: new Promise<void>((r) => (markExited = r)) };
    actors.push(actor);
    readies.push(new Promise<void>((resolve) => {
      channel.onMessage((msg) => {
        if (msg.kind === 'ready') resolve();
        else if (msg.kind === 'fatal') fatal.set(rank, errorFromWire(msg.error));
        else group?.onRankMessage(rank, msg);
      });
    }));
    channel.onExit((code, signal, error) => {
      actor.alive = false;
      markExited();
      if (group) return group.onRankExit(rank, code, signal);
      const cause = fatal.get(rank) ?? error;
      startupFailure ??= new RankFailedError(rank, code, signal, `during startup${cause ? `: ${cause.message}` : ''}`);
      failStartup(startupFailure);
    });
    const init: RankInit = {
      rank, localRank, worldSize: opts.worldSize, nodeRank: opts.nodeRank,
      device: backend === 'nccl' ? `cuda:${opts.devices[localRank]}` : 'cpu', backend, mode: opts.mode,
      storeHost: opts.masterAddr, storePort, workerUrl: opts.workerUrl, timeoutMs: opts.timeoutMs, startupTimeoutMs: opts.startupTimeoutMs,
      tensorParallelSize: opts.tensorParallelSize, pipelineParallelSize: opts.pipelineParallelSize,
    };
    channel.send({ kind: 'init', init });
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallTimeoutError(-1, 'launchGroup', opts.startupTimeoutMs)), opts.startupTimeoutMs);
  });
  try {
    await Promise.race([Promise.all(readies), failed, deadline]);
  } catch (err) {
    await stopActors(actors, 1_000);
    await server?.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  group = new Group(opts, backend, actors, server, storePort);
  return group;
}
