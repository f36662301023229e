/**
 * vLLM's PyNcclCommunicator (device_communicators/pynccl.py) on real libnccl: the unique id made by
 * group rank 0 and shared through the group's store, a non-blocking init
 * (`blocking = 0`) so that init itself has a deadline and can be aborted, and every
 * operation enqueued on the actor's current stream, returning at once.
 *
 * A watchdog (see {@link NcclWatchdog}) aborts the communicator when work stalls past
 * the deadline, when NCCL reports an asynchronous error, or when the orchestrator says
 * a peer died; every waiter then gets a typed error carrying the flight recorder.
 */
import {
  CaptureMode,
  Flags,
  MemcpyKind,
  NcclRedOp,
  NcclResult,
  cuda,
  cudaErrorNotReady,
  nccl,
  ncclConfig,
  uniqueIdFromBytes,
  type NcclLibrary,
} from '../../native/index.ts';
import {
  CollectiveTimeoutError,
  GroupClosedError,
  InvalidArgumentError,
  NcclError,
  RankFailedError,
} from '../errors.ts';
import { log } from '../log.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { Tensor, currentStream, ncclDataType, parseDevice } from '../tensor/index.ts';
import { DeviceCommunicator, type ReduceOp } from './device-communicator.ts';
import { NcclWatchdog } from './nccl-watchdog.ts';

/** Options of {@link NcclCommunicator.create}. */
export interface NcclCommunicatorOptions {
  /** Control plane of the group: its rank, world size and store. */
  group: StatelessProcessGroup;
  /** `cuda:N`; must be this thread's current device. */
  device: string;
  /** Name used in errors and logs, e.g. `world` or `tp:0`. */
  groupName: string;
  /** Deadline of every collective, in ms. Default 120 000. */
  timeoutMs?: number;
  /** Deadline of the communicator's init, in ms. Default: timeoutMs. */
  initTimeoutMs?: number;
  /** Fired by the orchestrator when a peer died: the communicator aborts. */
  abortSignal?: AbortSignal;
  /** At world size 1, run operations through NCCL instead of returning the input (see CommunicatorInfo). */
  singleRankOps?: boolean;
  /**
   * Keep the non-blocking bootstrap communicator until destroy, so that subgroup
   * communicators can be split from it ({@link NcclCommunicator.split}). Default false.
   */
  splittable?: boolean;
}

/** Options of {@link NcclCommunicator.split}. */
export interface NcclSplitOptions {
  /** Control plane of the new group: its rank and size are this rank's place in it. */
  group: StatelessProcessGroup;
  /** Name used in errors and logs, e.g. `tp:0/1`. */
  groupName: string;
  /** Ranks that pass the same color form one communicator; null: this rank joins none. */
  color: number | null;
  /** Orders the ranks inside the new communicator: this rank's rank in `group`. */
  key: number;
  /** Deadline of every collective of the new communicator, in ms. Default: this one's. */
  timeoutMs?: number;
  /** Deadline of the split, in ms. Default: timeoutMs. */
  initTimeoutMs?: number;
  abortSignal?: AbortSignal;
}

/** NCCL_SPLIT_NOCOLOR (nccl.h): the rank takes part in the split but gets no communicator. */
const NCCL_SPLIT_NOCOLOR = -1;

/** Communicator over libnccl for the tensors of one CUDA device. */
export class NcclCommunicator extends DeviceCommunicator {
  /** NCCL version in use, e.g. `2.28.9`. */
  readonly ncclVersion: string;
  /** The ncclComm_t handle; 0n once destroyed. */
  comm: bigint;
  private readonly lib: NcclLibrary;
  private readonly watchdog: NcclWatchdog;
  private readonly i32 = new Int32Array(1);
  /** The non-blocking communicator subgroups are split from (0n: none); see `splittable`. */
  private splitParent: bigint;
  /** False until the first collective of a split communicator (no warm-up; see connectPeers). */
  private connected = true;

  private constructor(
    opts: NcclCommunicatorOptions,
    lib: NcclLibrary,
    comm: bigint,
    timeoutMs: number,
    splitParent = 0n,
  ) {
    super({
      rankInGroup: opts.group.rank,
      worldSize: opts.group.worldSize,
      device: opts.device,
      groupName: opts.groupName,
      singleRankOps: opts.singleRankOps,
    });
    this.lib = lib;
    this.comm = comm;
    this.splitParent = splitParent;
    this.ncclVersion = lib.version;
    this.watchdog = new NcclWatchdog({
      lib,
      comm,
      groupName: opts.groupName,
      timeoutMs,
      recorder: this.recorder,
      abortSignal: opts.abortSignal,
    });
  }

  /**
   * Creates the communicator collectively: every rank of `group` must call it. Group
   * rank 0 makes the unique id; init runs non-blocking and is aborted at the deadline.
   */
  static async create(opts: NcclCommunicatorOptions): Promise<NcclCommunicator> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const initTimeoutMs = opts.initTimeoutMs ?? timeoutMs;
    const ordinal = parseDevice(opts.device);
    if (ordinal === null)
      throw new InvalidArgumentError('device', `an NCCL communicator needs a 'cuda:N' device, got '${opts.device}'`);
    const rt = cuda();
    const current = new Int32Array(1);
    rt.cudaGetDevice(current);
    if (current[0] !== ordinal) {
      throw new InvalidArgumentError(
        'device',
        `${opts.device} is not this thread's current device (cuda:${current[0]})`,
      );
    }
    const lib = nccl();
    const { group } = opts;
    const startMs = performance.now();
    let idBytes: Uint8Array;
    if (group.rank === 0) {
      const id: { internal?: Uint8Array } = {};
      lib.ncclGetUniqueId(id);
      idBytes = new Uint8Array(id.internal!);
      await group.broadcastObj(idBytes, 0);
    } else {
      idBytes = await group.broadcastObj<Uint8Array>(null, 0);
    }
    const out = new BigUint64Array(1);
    lib.ncclCommInitRankConfig(
      out,
      group.worldSize,
      uniqueIdFromBytes(idBytes),
      group.rank,
      ncclConfig({ blocking: 0 }),
    );
    await waitInitialized(lib, out[0], opts.groupName, initTimeoutMs, opts.abortSignal);
    const comm = await blockingChild(lib, out[0], group.rank, opts.groupName, initTimeoutMs, opts.abortSignal);
    // The bootstrap communicator has served its purpose unless subgroups are split from
    // it; abort is local and never blocks.
    if (comm !== out[0] && !opts.splittable) lib.ncclCommAbort(out[0]);
    const self = new NcclCommunicator(opts, lib, comm, timeoutMs, opts.splittable ? out[0] : 0n);
    const readyMs = performance.now();
    // Warm-up (as PyNcclCommunicator.__init__): the first collective sets up connections.
    const one = Tensor.zeros([1], { dtype: 'float32', device: opts.device });
    const sum = await self.allReduce(one);
    await self.synchronize();
    one.dispose();
    sum.dispose();
    log(
      'info',
      'nccl',
      `group ${opts.groupName}: rank ${group.rank}/${group.worldSize} on ${opts.device}, NCCL ${lib.version}: ` +
        `init ${(readyMs - startMs).toFixed(1)} ms, warm-up ${(performance.now() - readyMs).toFixed(1)} ms`,
    );
    return self;
  }

  /**
   * A communicator for a subgroup, split from this one's bootstrap communicator
   * (ncclCommSplit): no new unique id, no rendezvous through the store, NCCL reuses what
   * it learnt about the job. Collective over this communicator: every rank of it must
   * call split, those outside any subgroup with `color: null` (they get null). Needs
   * `splittable` at create. Non-blocking on the parent, so the split has a deadline and
   * an abort; the new communicator is blocking (direct enqueue). Its warm-up waits for
   * its first collective (see connectPeers), so a group no operation uses costs only
   * the split.
   */
  async split(opts: NcclSplitOptions): Promise<NcclCommunicator | null> {
    this.watchdog.throwIfFailed();
    if (this.splitParent === 0n) {
      throw new InvalidArgumentError(
        'split',
        `communicator of group '${this.groupName}' was not created splittable (or was destroyed)`,
      );
    }
    const timeoutMs = opts.timeoutMs ?? this.watchdog.timeoutMs;
    const initTimeoutMs = opts.initTimeoutMs ?? timeoutMs;
    const startMs = performance.now();
    const child = new BigUint64Array(1);
    this.lib.ncclCommSplit(
      this.splitParent,
      opts.color ?? NCCL_SPLIT_NOCOLOR,
      opts.key,
      child,
      ncclConfig({ blocking: 1 }),
    );
    // As in blockingChild: the split runs on the parent's helper thread; both are polled.
    try {
      await waitInitialized(this.lib, this.splitParent, opts.groupName, initTimeoutMs, opts.abortSignal);
    } catch (err) {
      // waitInitialized aborted the parent: nothing splits from it any more.
      this.splitParent = 0n;
      throw err;
    }
    if (child[0] === 0n) return null;
    await waitInitialized(this.lib, child[0], opts.groupName, initTimeoutMs, opts.abortSignal);
    const comm = new NcclCommunicator(
      { group: opts.group, device: this.device, groupName: opts.groupName, timeoutMs, abortSignal: opts.abortSignal },
      this.lib,
      child[0],
      timeoutMs,
    );
    comm.connected = false;
    log(
      'info',
      'nccl',
      `group ${opts.groupName}: rank ${opts.group.rank}/${opts.group.worldSize}, split from '${this.groupName}' in ${(performance.now() - startMs).toFixed(1)} ms`,
    );
    return comm;
  }

  /**
   * Waits until every operation enqueued so far on the current stream has finished,
   * without blocking the event loop. Rejects with the watchdog's typed error when the
   * communicator was aborted (deadline, NCCL error or a dead peer).
   */
  override synchronize(timeoutMs?: number): Promise<void> {
    return this.watchdog.waitIdle(currentStream().handle, timeoutMs);
  }

  /** ncclGroupStart: fuse the following calls (until {@link groupEnd}) into one launch. */
  groupStart(): void {
    this.watchdog.throwIfFailed();
    this.lib.ncclGroupStart();
  }

  /** ncclGroupEnd; completes the enqueue of a non-blocking group. */
  groupEnd(): void {
    this.settle(this.lib.ncclGroupEnd());
  }

  /** Runs `fn` between ncclGroupStart and ncclGroupEnd: its operations launch as one. */
  override async grouped<T>(fn: () => Promise<T> | T): Promise<T> {
    this.groupStart();
    try {
      return await fn();
    } finally {
      this.groupEnd();
    }
  }

  /**
   * NCCL opens a point-to-point connection inside the first send or receive to a peer,
   * blocking the calling thread until the peer joins: a one-element send to `sendTo`
   * and receive from `recvFrom` (either may be null), grouped, open them now.
   */
  override async openPointToPoint(sendTo: number | null, recvFrom: number | null, timeoutMs?: number): Promise<void> {
    const out = Tensor.zeros([1], { dtype: 'float32', device: this.device });
    const pending = await this.grouped(() => [
      sendTo === null ? Promise.resolve() : this.send(out, sendTo),
      recvFrom === null ? Promise.resolve() : this.recv([1], 'float32', recvFrom).then((got) => got.dispose()),
    ]);
    await Promise.all(pending);
    await this.synchronize(timeoutMs);
    out.dispose();
  }

  /**
   * Aborts the communicator (idempotent). Later operations fail; operations still
   * running end without their results, and their stream is marked failed.
   */
  override destroy(): void {
    if (this.comm === 0n) return;
    this.watchdog.close(new GroupClosedError(`NCCL communicator of group '${this.groupName}' was destroyed`));
    if (this.splitParent !== 0n && this.splitParent !== this.comm) this.lib.ncclCommAbort(this.splitParent);
    this.splitParent = 0n;
    this.comm = 0n;
  }

  /**
   * Waits (polling, within `timeoutMs`) for the operations issued so far to complete,
   * then destroys: the caller's outputs arrive even when it has not synchronized. Work
   * that never completes (a peer that never joins) is ended at the deadline, as destroy().
   */
  override async close(timeoutMs?: number): Promise<void> {
    if (this.comm === 0n) return;
    await this.watchdog.drain(timeoutMs);
    this.destroy();
  }

  protected override _allReduce(input: Tensor, output: Tensor, op: ReduceOp): void {
    const seq = this.begin('all_reduce', input, null);
    const stream = currentStream().handle;
    this.settle(
      this.lib.ncclAllReduce(
        input.dataPtr,
        output.dataPtr,
        input.numel,
        ncclDataType(input.dtype),
        NcclRedOp[op],
        this.comm,
        stream,
      ),
    );
    this.watchdog.issued(seq, stream);
  }

  protected override _allGather(input: Tensor, output: Tensor): void {
    const seq = this.begin('all_gather', input, null);
    const stream = currentStream().handle;
    this.settle(
      this.lib.ncclAllGather(input.dataPtr, output.dataPtr, input.numel, ncclDataType(input.dtype), this.comm, stream),
    );
    this.watchdog.issued(seq, stream);
  }

  protected override _reduceScatter(input: Tensor, output: Tensor, op: ReduceOp): void {
    const seq = this.begin('reduce_scatter', input, null);
    const stream = currentStream().handle;
    this.settle(
      this.lib.ncclReduceScatter(
        input.dataPtr,
        output.dataPtr,
        output.numel,
        ncclDataType(input.dtype),
        NcclRedOp[op],
        this.comm,
        stream,
      ),
    );
    this.watchdog.issued(seq, stream);
  }

  // pynccl.py: all_gatherv as grouped broadcasts, one per root, slicing dim 0.
  protected override _allGatherv(input: Tensor, output: Tensor, sizes: readonly number[]): void {
    const seq = this.begin('all_gatherv', input, null);
    const row = rowNumel(output);
    const stream = currentStream().handle;
    const type = ncclDataType(input.dtype);
    this.lib.ncclGroupStart();
    let offset = 0;
    for (let root = 0; root < this.worldSize; root++) {
      const dst = output.dataPtr + BigInt(offset * row * output.itemsize);
      this.lib.ncclBroadcast(input.dataPtr, dst, sizes[root] * row, type, root, this.comm, stream);
      offset += sizes[root];
    }
    this.settle(this.lib.ncclGroupEnd());
    this.watchdog.issued(seq, stream);
  }

  // pynccl.py: reduce_scatterv as grouped reduces; only root r keeps chunk r.
  protected override _reduceScatterv(input: Tensor, output: Tensor, sizes: readonly number[], op: ReduceOp): void {
    const seq = this.begin('reduce_scatterv', input, null);
    const row = rowNumel(input);
    const stream = currentStream().handle;
    const type = ncclDataType(input.dtype);
    this.lib.ncclGroupStart();
    let offset = 0;
    for (let root = 0; root < this.worldSize; root++) {
      const src = input.dataPtr + BigInt(offset * row * input.itemsize);
      this.lib.ncclReduce(src, output.dataPtr, sizes[root] * row, type, NcclRedOp[op], root, this.comm, stream);
      offset += sizes[root];
    }
    this.settle(this.lib.ncclGroupEnd());
    this.watchdog.issued(seq, stream);
  }

  protected override _gather(input: Tensor, output: Tensor | null, dst: number): void {
    const seq = this.begin('gather', input, dst);
    const stream = currentStream().handle;
    const type = ncclDataType(input.dtype);
    this.lib.ncclGroupStart();
    if (output === null) {
      this.lib.ncclSend(input.dataPtr, input.numel, type, dst, this.comm, stream);
    } else {
      for (let r = 0; r < this.worldSize; r++) {
        const slot = output.dataPtr + BigInt(r * input.nbytes);
        if (r === this.rankInGroup)
          cuda().cudaMemcpyAsync(slot, input.dataPtr, input.nbytes, MemcpyKind.DeviceToDevice, stream);
        else this.lib.ncclRecv(slot, input.numel, type, r, this.comm, stream);
      }
    }
    this.settle(this.lib.ncclGroupEnd());
    this.watchdog.issued(seq, stream);
  }

  // pynccl.py: broadcast: sendbuff = recvbuff on the root, NULL elsewhere.
  protected override _broadcast(tensor: Tensor, src: number): void {
    const seq = this.begin('broadcast', tensor, src);
    const send = this.rankInGroup === src ? tensor.dataPtr : null;
    const stream = currentStream().handle;
    this.settle(
      this.lib.ncclBroadcast(send, tensor.dataPtr, tensor.numel, ncclDataType(tensor.dtype), src, this.comm, stream),
    );
    this.watchdog.issued(seq, stream);
  }

  protected override _send(tensor: Tensor, dst: number): void {
    const seq = this.begin('send', tensor, dst, false);
    const stream = currentStream().handle;
    this.settle(this.lib.ncclSend(tensor.dataPtr, tensor.numel, ncclDataType(tensor.dtype), dst, this.comm, stream));
    this.watchdog.issued(seq, stream);
  }

  protected override _recv(tensor: Tensor, src: number): void {
    const seq = this.begin('recv', tensor, src, false);
    const stream = currentStream().handle;
    this.settle(this.lib.ncclRecv(tensor.dataPtr, tensor.numel, ncclDataType(tensor.dtype), src, this.comm, stream));
    this.watchdog.issued(seq, stream);
  }

  /** Before each operation: the failure check, the first collective's connection, the flight record. */
  private begin(op: string, t: Tensor, peer: number | null, collective = true): number {
    this.watchdog.throwIfFailed();
    if (!this.connected && collective) this.connectPeers();
    return this.recorder.start(op, t.dtype, t.numel, peer);
  }

  /**
   * A split communicator has had no warm-up: NCCL connects its peers on its first
   * collective (runtime connection). Before that first collective every member runs a
   * one-element all-reduce, the warm-up PyNcclCommunicator.__init__ runs at creation,
   * so that the members stay matched whatever each one does next. When the first
   * collective is being captured into a CUDA graph, the warm-up runs outside the graph,
   * on a stream of its own with the thread's capture mode relaxed (NCCL allocates while
   * connecting), and is waited for here: every member is at this same collective.
   * Point-to-point calls never come here: they involve two members, not all.
   */
  private connectPeers(): void {
    this.connected = true;
    const rt = cuda();
    const stream = currentStream().handle;
    rt.cudaStreamIsCapturing(stream, this.i32);
    const capturing = this.i32[0] !== 0;
    const mode = new Int32Array([CaptureMode.Relaxed]);
    const side = new BigUint64Array(1);
    const buf = new BigUint64Array(1);
    if (capturing) {
      rt.cudaThreadExchangeStreamCaptureMode(mode);
      rt.cudaStreamCreateWithFlags(side, Flags.streamNonBlocking);
    }
    const on = capturing ? side[0] : stream;
    try {
      rt.cudaMallocAsync(buf, 4, on);
      this.settle(this.lib.ncclAllReduce(buf[0], buf[0], 1, ncclDataType('float32'), NcclRedOp.sum, this.comm, on));
      const deadline = performance.now() + this.watchdog.timeoutMs;
      while (capturing && rt.cudaStreamQuery(on) === cudaErrorNotReady) {
        if (performance.now() > deadline) {
          throw this.watchdog.fail(
            new CollectiveTimeoutError(this.groupName, 'connect', this.recorder.nextSeq, this.watchdog.timeoutMs, []),
          );
        }
      }
    } finally {
      if (buf[0] !== 0n) rt.cudaFreeAsync(buf[0], on);
      if (capturing) {
        rt.cudaStreamDestroy(side[0]);
        rt.cudaThreadExchangeStreamCaptureMode(mode);
      }
    }
  }

  /**
   * A non-blocking communicator may answer ncclInProgress while it finishes enqueuing
   * (e.g. the first use of a peer connection); wait for that before going on, as NCCL
   * requires, with the communicator's deadline.
   */
  private settle(result: number): void {
    if (result !== NcclResult.ncclInProgress) return;
    const deadline = performance.now() + this.watchdog.timeoutMs;
    for (;;) {
      this.lib.ncclCommGetAsyncError(this.comm, this.i32);
      const state = this.i32[0];
      if (state === NcclResult.ncclSuccess) return;
      if (state !== NcclResult.ncclInProgress) {
        throw this.watchdog.fail(this.lib.errorFor(state, 'ncclCommGetAsyncError'));
      }
      if (performance.now() > deadline) {
        throw this.watchdog.fail(
          new CollectiveTimeoutError(
            this.groupName,
            'enqueue',
            this.recorder.nextSeq - 1,
            this.watchdog.timeoutMs,
            this.recorder.recent(),
          ),
        );
      }
    }
  }
}

/**
 * The data path runs on a blocking communicator split from the bootstrap one. A
 * non-blocking communicator hands every launch to NCCL's helper thread and answers
 * ncclInProgress, which costs ~100 µs of polling per collective; a blocking one enqueues
 * directly. The init keeps its deadline (the bootstrap communicator is non-blocking),
 * and the split of an initialized communicator is quick. If the split is refused, the
 * bootstrap communicator serves (slower, still correct).
 */
async function blockingChild(
  lib: NcclLibrary,
  parent: bigint,
  rank: number,
  groupName: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<bigint> {
  const child = new BigUint64Array(1);
  try {
    lib.ncclCommSplit(parent, 0, rank, child, ncclConfig({ blocking: 1 }));
    // A split of a non-blocking parent runs on the parent's helper thread even when it
    // answers ncclSuccess: the parent reports ncclInProgress until the split is done, and
    // the child is not usable before. Both are polled (the NCCL docs ask for both).
    await waitInitialized(lib, parent, groupName, timeoutMs, signal);
    if (child[0] !== 0n) await waitInitialized(lib, child[0], groupName, timeoutMs, signal);
  } catch (err) {
    if (err instanceof NcclError) {
      log(
        'warn',
        'nccl',
        `group ${groupName}: blocking split refused (${err.message}); using the non-blocking communicator`,
      );
      return parent;
    }
    throw err;
  }
  return child[0] === 0n ? parent : child[0];
}

/** Polls a non-blocking init to completion; aborts the communicator at the deadline. */
async function waitInitialized(
  lib: NcclLibrary,
  comm: bigint,
  groupName: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const state = new Int32Array(1);
  const deadline = performance.now() + timeoutMs;
  let delayMs = 0;
  for (;;) {
    lib.ncclCommGetAsyncError(comm, state);
    if (state[0] === NcclResult.ncclSuccess) return;
    let failure: Error | undefined;
    if (state[0] !== NcclResult.ncclInProgress) {
      failure = lib.errorFor(state[0], 'ncclCommInitRankConfig');
    } else if (signal?.aborted) {
      failure =
        signal.reason instanceof RankFailedError
          ? signal.reason
          : new GroupClosedError(`init of group '${groupName}' aborted`);
    } else if (performance.now() > deadline) {
      failure = new CollectiveTimeoutError(groupName, 'init', 0, timeoutMs, []);
    }
    if (failure) {
      lib.ncclCommAbort(comm);
      throw failure;
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    delayMs = Math.min(10, delayMs + 1);
  }
}

/** Elements in one slice along dim 0. */
function rowNumel(t: Tensor): number {
  let n = 1;
  for (let i = 1; i < t.shape.length; i++) n *= t.shape[i];
  return n;
}
