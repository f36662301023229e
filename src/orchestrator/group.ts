/**
 * The coordinator's handle on launched rank actors. A rank that dies fails every
 * pending and later call with RankFailedError, fires `rank-exit` and `error`, and
 * makes the other ranks abort; a call past its deadline fails with CallTimeoutError;
 * shutdown() leaves no process, thread or port behind.
 *
 * A script that is done ends even without shutdown(): between calls the group holds
 * none of this process's event loop (the rank handles and the store are unref'd; a
 * pending call holds it), and when the loop runs dry the group shuts itself down, the
 * ranks tearing down as they would for shutdown(). A process that exits outright
 * (process.exit, a fatal error) SIGKILLs its rank processes on the way out; rank
 * processes also leave when their IPC channel closes (workers/process-entry.ts), which
 * covers a coordinator that was SIGKILLed itself. Rank threads end with the process.
 */
import { EventEmitter } from 'eventemitter3';
import { nanoid } from 'nanoid';
import { CallTimeoutError, GroupClosedError, InvalidArgumentError, RankFailedError, RemoteError } from '../errors.ts';
import { log } from '../log.ts';
import type { TcpStoreServer } from '../store/index.ts';
import type { ResolvedOptions } from './options.ts';
import { decodeError, dispatch, encodeError, type FromRank } from './protocol.ts';
import type { RankChannel } from './spawn.ts';

/** Payload of the `rank-exit` event. */
export interface RankExitEvent {
  rank: number;
  code: number | null;
  signal: string | null;
  /** The failure the exit caused (absent for exits during shutdown). */
  error?: RankFailedError;
}

/** A record a rank sent to its coordinator (payload of the `log` event). */
export interface RankLogEvent {
  rank: number;
  level: 'error' | 'warn' | 'info' | 'debug';
  message: string;
}

/** Events of a {@link Group}. */
export interface GroupEvents {
  'rank-exit': [RankExitEvent];
  log: [RankLogEvent];
  /** The group failed (the RankFailedError that every call now rejects with). */
  error: [Error];
}

/** Per-call options of {@link Group.callWithOptions} and {@link Group.callAllWithOptions}. */
export interface CallOptions {
  /** Deadline of this call in ms (default: the group's `timeoutMs`). */
  timeoutMs?: number;
}

interface PendingCall {
  rank: number;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** @internal One rank actor as the coordinator tracks it. */
export interface Actor {
  rank: number;
  channel: RankChannel;
  alive: boolean;
  /** Resolves once the actor is gone. */
  exited: Promise<void>;
}

/** How long shutdown() waits for ranks to leave on their own before killing them. */
const DEFAULT_GRACE_MS = 5_000;

/** Groups not yet shut down; one pair of process listeners serves them all. */
const openGroups = new Set<Group>();

function onBeforeExit(): void {
  // The loop ran dry: nothing in this script will call the groups again.
  for (const g of openGroups) void g.shutdown();
}

function onProcessExit(): void {
  for (const g of openGroups) g.killOnExit();
}

function track(group: Group): void {
  if (openGroups.size === 0) {
    process.on('beforeExit', onBeforeExit);
    process.on('exit', onProcessExit);
  }
  openGroups.add(group);
}

function untrack(group: Group): void {
  if (!openGroups.delete(group) || openGroups.size > 0) return;
  process.off('beforeExit', onBeforeExit);
  process.off('exit', onProcessExit);
}

/** A launched group of rank actors (this node's share of the world). Built by {@link launchGroup}. */
export class Group extends EventEmitter<GroupEvents> {
  /** Ranks in the whole world (all nodes). */
  readonly worldSize: number;
  readonly mode: 'process' | 'thread';
  readonly backend: 'nccl' | 'cpu';
  /** Global ranks started by this coordinator, ascending. */
  readonly ranks: readonly number[];
  /** Where the job's store listens (served by node 0's coordinator). */
  readonly storeAddress: { readonly host: string; readonly port: number };
  /** OS process id of each local rank, in `ranks` order (the coordinator's own pid in thread mode). */
  readonly pids: readonly number[];
  private readonly actors = new Map<number, Actor>();
  private readonly pending = new Map<string, PendingCall>();
  /** Why a rank is dying, when it said so before exiting (uncaught exception...). */
  private readonly causes = new Map<number, Error>();
  private readonly timeoutMs: number;
  private failure: RankFailedError | null = null;
  private closing: Promise<void> | null = null;

  /** @internal built by launchGroup */
  constructor(
    opts: ResolvedOptions,
    backend: 'nccl' | 'cpu',
    actors: Actor[],
    private readonly server: TcpStoreServer | null,
    storePort: number,
  ) {
    super();
    this.worldSize = opts.worldSize;
    this.mode = opts.mode;
    this.backend = backend;
    this.timeoutMs = opts.timeoutMs;
    this.ranks = actors.map((a) => a.rank);
    this.pids = actors.map((a) => a.channel.pid);
    this.storeAddress = { host: opts.masterAddr, port: storePort };
    for (const a of actors) this.actors.set(a.rank, a);
    this.holdLoop(false);
    track(this);
  }

  /** Calls `fn(ctx, ...args)` in rank `rank` (a global rank of this node) under the group's deadline. */
  call<T = unknown>(rank: number, fn: string, ...args: unknown[]): Promise<T> {
    return this.callWithOptions<T>(rank, fn, args);
  }

  /** Calls `fn(ctx, ...args)` in every local rank; results in rank order; rejects if any call rejects. */
  callAll<T = unknown>(fn: string, ...args: unknown[]): Promise<T[]> {
    return this.callAllWithOptions<T>(fn, args);
  }

  /** {@link call} with per-call options: `timeoutMs` overrides the group's deadline for this call. */
  callWithOptions<T = unknown>(rank: number, fn: string, args: unknown[], opts: CallOptions = {}): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing)
      return Promise.reject(new GroupClosedError(`the group was shut down; call '${fn}' on rank ${rank} was not sent`));
    const actor = this.actors.get(rank);
    if (!actor)
      return Promise.reject(
        new InvalidArgumentError(
          'rank',
          `rank ${rank} is not one of this coordinator's ranks [${this.ranks.join(', ')}]`,
        ),
      );
    if (typeof fn !== 'string' || fn.length === 0)
      return Promise.reject(new InvalidArgumentError('fn', 'expected the name of an exported function'));
    if (!Array.isArray(args)) return Promise.reject(new InvalidArgumentError('args', 'expected an array of arguments'));
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1)
      return Promise.reject(
        new InvalidArgumentError('timeoutMs', `must be a positive integer, got ${String(timeoutMs)}`),
      );
    const id = nanoid();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.released();
        reject(new CallTimeoutError(rank, fn, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { rank, resolve: resolve as (v: unknown) => void, reject, timer });
      if (this.pending.size === 1) this.holdLoop(true);
      try {
        actor.channel.send({ kind: 'call', id, fn, args, timeoutMs });
      } catch (err) {
        // Arguments the channel cannot carry (a function, a socket...).
        this.settle(id, (p) =>
          p.reject(
            new InvalidArgumentError(
              'args',
              `the arguments of '${fn}' cannot cross to rank ${rank} (${(err as Error).message}); pass structured-cloneable data`,
            ),
          ),
        );
      }
    });
  }

  /** {@link callAll} with per-call options (each rank's call gets the same deadline). */
  callAllWithOptions<T = unknown>(fn: string, args: unknown[], opts: CallOptions = {}): Promise<T[]> {
    return Promise.all(this.ranks.map((r) => this.callWithOptions<T>(r, fn, args, opts)));
  }

  /**
   * Stops every actor and the store; idempotent. Pending calls reject with
   * GroupClosedError; ranks get `graceMs` to tear down and exit, then are killed
   * (SIGKILL / terminate). Resolves when every actor is gone, also after a failure.
   */
  shutdown(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    this.closing ??= this.close(graceMs);
    return this.closing;
  }

  /** @internal a message from a rank after startup */
  onRankMessage(rank: number, msg: FromRank): void {
    dispatch(msg, {
      result: ({ id, value }) => this.settle(id, (p) => p.resolve(value)),
      error: ({ id, error }) => this.settle(id, (p) => p.reject(decodeError(error))),
      log: ({ level, message }) => this.emit('log', { rank, level, message }),
      fatal: ({ error }) => void this.causes.set(rank, decodeError(error)),
      ready: () => undefined,
    });
  }

  /** @internal an actor is gone; `cause` is what ended it when its runtime knows */
  onRankExit(rank: number, code: number | null, signal: string | null, cause?: Error): void {
    const actor = this.actors.get(rank);
    if (actor) actor.alive = false;
    if (this.closing) {
      this.emit('rank-exit', { rank, code, signal });
      return;
    }
    const error = new RankFailedError(rank, code, signal, describeCause(this.causes.get(rank) ?? cause));
    log('warn', 'coordinator', error.message);
    const first = !this.failure;
    if (first) {
      this.failure = error;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(error);
      }
      this.pending.clear();
      this.released();
      const wire = encodeError(error, rank);
      for (const other of this.actors.values()) if (other.alive) other.channel.send({ kind: 'abort', error: wire });
    }
    this.emit('rank-exit', { rank, code, signal, error });
    if (first) this.emit('error', error);
  }

  private settle(id: string, fn: (p: PendingCall) => void): void {
    const p = this.pending.get(id);
    if (!p) return; // timed out or failed already; a late reply is dropped
    this.pending.delete(id);
    this.released();
    clearTimeout(p.timer);
    fn(p);
  }

  /** While calls are pending (or the group is closing) the ranks and the store hold the loop. */
  private holdLoop(hold: boolean): void {
    for (const a of this.actors.values()) a.channel.holdLoop(hold);
    this.server?.holdLoop(hold);
  }

  private released(): void {
    if (this.pending.size === 0 && !this.closing) this.holdLoop(false);
  }

  /** @internal The process is exiting without shutdown(): no rank process may outlive it. */
  killOnExit(): void {
    if (this.mode === 'process') for (const a of this.actors.values()) if (a.alive) a.channel.kill();
  }

  private async close(graceMs: number): Promise<void> {
    this.holdLoop(true);
    const closed = new GroupClosedError('the group was shut down while the call was pending');
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(closed);
    }
    this.pending.clear();
    await stopActors([...this.actors.values()], graceMs);
    await this.server?.close();
    untrack(this);
  }
}

/** One line naming what killed a rank, for RankFailedError's message. */
function describeCause(cause: Error | undefined): string {
  if (!cause) return '';
  return cause instanceof RemoteError ? cause.message : `${cause.name}: ${cause.message}`;
}

/** @internal Asks actors to stop, then kills those still alive after `graceMs`; resolves when all are gone. */
export async function stopActors(actors: Actor[], graceMs: number): Promise<void> {
  for (const a of actors) if (a.alive) a.channel.send({ kind: 'shutdown' });
  const all = Promise.all(actors.map((a) => a.exited));
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
  if ((await Promise.race([all, grace])) === 'timeout') for (const a of actors) if (a.alive) a.channel.kill();
  clearTimeout(timer);
  // After SIGKILL / terminate() the exit always comes (a thread blocked in a native
  // call is the exception: terminate() cannot interrupt it; use process mode for those).
  await all;
}
