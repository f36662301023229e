/**
 * The semantics every communicator shares (base_device_communicator.py: DeviceCommunicatorBase): dims, permutations,
 * default peers, world-size-1 short cuts and argument checks. A backend implements
 * only flat, contiguous primitives along dim 0 (the `_` methods); this class turns
 * them into vLLM's operations. Validation happens here, before any native call.
 */
import { NcclRedOp, type ReduceOp as NcclReduceOp } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { DeviceStorage, HostStorage, Tensor } from '../tensor/index.ts';
import type { DType } from '../tensor/index.ts';
import { FlightRecorder } from './flight-recorder.ts';
import type { OpCall } from './op-call.ts';
import { checkRank, normalizeDim } from '../validate.ts';

/** A reduction: NCCL's ncclRedOp_t names (native/nccl.ts), which the CPU backend implements too. */
export type ReduceOp = NcclReduceOp;
const reduceOps = Object.keys(NcclRedOp) as ReduceOp[];

/** dtypes no backend reduces; they still move as bytes (gather, broadcast, send/recv). */
const unreducible: ReadonlySet<DType> = new Set(['float8_e4m3fn', 'float8_e5m2']);

/** Identity of a communicator inside its group. */
export interface CommunicatorInfo {
  /** This rank's index in the group, 0..worldSize-1. */
  rankInGroup: number;
  worldSize: number;
  /** `cpu` or `cuda:N`: the only device whose tensors this communicator accepts. */
  device: string;
  /** Group name used in errors, e.g. `tp:0`. */
  groupName: string;
  /**
   * At world size 1, run the operations through the backend anyway (a one-rank
   * communicator) instead of returning the input as vLLM does; measures the whole op
   * path on one device. Default false.
   */
  singleRankOps?: boolean;
}

/**
 * Base class of {@link NcclCommunicator} and {@link CpuCommunicator}. Every public
 * operation is out of place (except `broadcast`, which fills its argument like torch),
 * returns a Promise, and on device is stream-ordered: the promise resolves once the
 * work is enqueued on the current stream.
 */
export abstract class DeviceCommunicator {
  readonly rankInGroup: number;
  readonly worldSize: number;
  readonly device: string;
  readonly groupName: string;
  /**
   * The last operations of this communicator. Backends call `recorder.start(...)` in
   * each primitive and `finishThrough(seq)` when work completes; timeout and failure
   * errors carry `recorder.recent()` (CollectiveTimeoutError.recent).
   */
  protected readonly recorder = new FlightRecorder();
  /**
   * The public call being issued, set just before a primitive is called (synchronously),
   * so that a backend can name it in errors that compare ranks (the CPU backend does).
   */
  protected calling: OpCall | null = null;
  /** World size 1 without singleRankOps: operations return their input, as `vllm/distributed/parallel_state.py: GroupCoordinator.all_reduce` does. */
  private readonly passThrough: boolean;

  constructor(info: CommunicatorInfo) {
    this.rankInGroup = info.rankInGroup;
    this.worldSize = info.worldSize;
    this.device = info.device;
    this.groupName = info.groupName;
    this.passThrough = info.worldSize === 1 && !info.singleRankOps;
  }

  // ---- primitives: contiguous tensors on this.device, dim 0, same dtype ----
  /** output[i] = op over ranks of input[i]; shapes equal. */
  protected abstract _allReduce(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> | void;
  /** output = concat over ranks (rank order) of input; output.numel = world × input.numel. */
  protected abstract _allGather(input: Tensor, output: Tensor): Promise<void> | void;
  /** Rank r gets rows [sum(sizes[<r]), +sizes[r]) of the concatenation; input is this rank's rows. */
  protected abstract _allGatherv(input: Tensor, output: Tensor, sizes: readonly number[]): Promise<void> | void;
  /** output = chunk `rankInGroup` of the reduction of input (input = world × output). */
  protected abstract _reduceScatter(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> | void;
  /** output = rows of chunk `rankInGroup` (chunks of `sizes[r]` rows) of the reduction of input. */
  protected abstract _reduceScatterv(
    input: Tensor,
    output: Tensor,
    sizes: readonly number[],
    op: ReduceOp,
  ): Promise<void> | void;
  /** At `dst`, output = concat over ranks of input; elsewhere output is null. */
  protected abstract _gather(input: Tensor, output: Tensor | null, dst: number): Promise<void> | void;
  /** Fills `tensor` everywhere with its value at `src`. */
  protected abstract _broadcast(tensor: Tensor, src: number): Promise<void> | void;
  protected abstract _send(tensor: Tensor, dst: number): Promise<void> | void;
  protected abstract _recv(tensor: Tensor, src: number): Promise<void> | void;

  /**
   * Releases the backend's resources at once; idempotent. Operations still running end
   * with it (their results never arrive); see {@link close} for a graceful close.
   */
  abstract destroy(): Promise<void> | void;

  /**
   * Closes after the operations issued so far have completed, within `timeoutMs`
   * (default: the communicator's deadline); past it, destroys as {@link destroy} does.
   * What a group's destroy uses: results the caller has not waited for still arrive
   * (torch's ProcessGroupNCCL::shutdown flushes with ncclCommFinalize before
   * ncclCommDestroy). Backends whose operations finish before they resolve just destroy.
   */
  async close(_timeoutMs?: number): Promise<void> {
    await this.destroy();
  }

  /**
   * Resolves when this communicator's operations so far have completed; rejects with
   * the communicator's typed error (timeout, dead peer, NCCL error) if they cannot.
   */
  abstract synchronize(timeoutMs?: number): Promise<void>;

  /**
   * Runs `fn`, whose operations on this communicator the backend may fuse into one
   * launch (NCCL: between ncclGroupStart and ncclGroupEnd, so that several broadcasts
   * or a send and a receive to different peers cannot deadlock each other). A no-op
   * wrapper on backends with nothing to fuse (CPU). Resolves with what `fn` returns.
   */
  async grouped<T>(fn: () => Promise<T> | T): Promise<T> {
    return fn();
  }

  /**
   * Opens the connections to `sendTo` and `recvFrom` now, all together, rather than
   * inside a later send or receive (NCCL connects point-to-point peers on first use,
   * blocking the thread until the peer joins); null leaves that direction out.
   * Collective over the peers; a no-op where connections need no opening (CPU).
   */
  async openPointToPoint(_sendTo: number | null, _recvFrom: number | null, _timeoutMs?: number): Promise<void> {}

  /** Out-of-place all-reduce; world size 1 returns `input` itself, as in vLLM. */
  async allReduce(input: Tensor, op: ReduceOp = 'sum'): Promise<Tensor> {
    this.checkTensor('input', input);
    this.checkReduce(input, op);
    if (this.passThrough) return input;
    const src = input.contiguous();
    const output = emptyLike(src);
    this.calling = { op: 'allReduce', dtype: input.dtype, shape: input.shape, reduce: op };
    const pending = this._allReduce(src, output, op); // NCCL: void, enqueued already
    if (pending) await pending;
    disposeCopy(src, input);
    return output;
  }

  /** Concatenation of every rank's `input` along `dim` (any dim, negative allowed). */
  async allGather(input: Tensor, dim = -1): Promise<Tensor> {
    this.checkTensor('input', input);
    const d = normalizeDim(dim, input.shape);
    if (this.passThrough) return input;
    const moved = frontDim(input, d);
    const output = emptyRows(moved, this.worldSize * moved.shape[0]);
    this.calling = { op: 'allGather', dtype: input.dtype, shape: input.shape };
    const pending = this._allGather(moved, output);
    if (pending) await pending;
    disposeCopy(moved, input);
    return backDim(output, d);
  }

  /**
   * Uneven all-gather: rank r contributes `sizes[r]` slices along `dim`; the result
   * has `sum(sizes)` there. Unlike vLLM (dim 0 only) any dim works.
   */
  async allGatherv(input: Tensor, sizes: readonly number[], dim = 0): Promise<Tensor> {
    this.checkTensor('input', input);
    const d = normalizeDim(dim, input.shape);
    this.checkSizes(sizes);
    if (input.shape[d] !== sizes[this.rankInGroup]) {
      throw new InvalidArgumentError(
        'sizes',
        `input has ${input.shape[d]} slices along dim ${d} but sizes[${this.rankInGroup}] is ${sizes[this.rankInGroup]}`,
      );
    }
    const moved = frontDim(input, d);
    const total = sizes.reduce((a, b) => a + b, 0);
    const output = emptyRows(moved, total);
    this.calling = { op: 'allGatherv', dtype: input.dtype, shape: input.shape };
    const pending = this._allGatherv(moved, output, sizes);
    if (pending) await pending;
    disposeCopy(moved, input);
    return backDim(output, d);
  }

  /**
   * Reduces across ranks, then keeps this rank's chunk along `dim`. The intended
   * semantics for any rank of tensor: vLLM moves `movedim(0, dim)`, which permutes
   * 3-D inputs wrongly when 0 < dim; we move `dim` to 0.
   */
  async reduceScatter(input: Tensor, dim = -1, op: ReduceOp = 'sum'): Promise<Tensor> {
    this.checkTensor('input', input);
    this.checkReduce(input, op);
    const d = normalizeDim(dim, input.shape);
    if (this.passThrough) return input;
    if (input.shape[d] % this.worldSize !== 0) {
      throw new InvalidArgumentError(
        'input',
        `size ${input.shape[d]} of dim ${d} is not divisible by world size ${this.worldSize}`,
      );
    }
    const moved = frontDim(input, d);
    const output = emptyRows(moved, moved.shape[0] / this.worldSize);
    this.calling = { op: 'reduceScatter', dtype: input.dtype, shape: input.shape, reduce: op };
    const pending = this._reduceScatter(moved, output, op);
    if (pending) await pending;
    disposeCopy(moved, input);
    return backDim(output, d);
  }

  /** Uneven reduce-scatter: this rank keeps `sizes[rankInGroup]` slices along `dim`. */
  async reduceScatterv(input: Tensor, sizes: readonly number[], dim = 0, op: ReduceOp = 'sum'): Promise<Tensor> {
    this.checkTensor('input', input);
    this.checkReduce(input, op);
    const d = normalizeDim(dim, input.shape);
    this.checkSizes(sizes);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (input.shape[d] !== total) {
      throw new InvalidArgumentError(
        'sizes',
        `sum(sizes) = ${total} but input has ${input.shape[d]} slices along dim ${d}`,
      );
    }
    const moved = frontDim(input, d);
    const output = emptyRows(moved, sizes[this.rankInGroup]);
    this.calling = { op: 'reduceScatterv', dtype: input.dtype, shape: input.shape, reduce: op };
    const pending = this._reduceScatterv(moved, output, sizes, op);
    if (pending) await pending;
    disposeCopy(moved, input);
    return backDim(output, d);
  }

  /** Concatenation along `dim` at group rank `dst`; `null` on the other ranks. */
  async gather(input: Tensor, dst = 0, dim = -1): Promise<Tensor | null> {
    this.checkTensor('input', input);
    this.checkPeer('dst', dst, true);
    const d = normalizeDim(dim, input.shape);
    if (this.passThrough) return input;
    const moved = frontDim(input, d);
    const output = this.rankInGroup === dst ? emptyRows(moved, this.worldSize * moved.shape[0]) : null;
    this.calling = { op: 'gather', dtype: input.dtype, shape: input.shape, root: dst };
    await this._gather(moved, output, dst);
    disposeCopy(moved, input);
    return output === null ? null : backDim(output, d);
  }

  /** Fills `tensor` on every rank with its value at group rank `src`; returns `tensor`. */
  async broadcast(tensor: Tensor, src = 0): Promise<Tensor> {
    this.checkTensor('tensor', tensor);
    this.checkPeer('src', src, true);
    if (this.passThrough) return tensor;
    if (!tensor.isContiguous)
      throw new InvalidArgumentError('tensor', 'broadcast needs a contiguous tensor (it is filled in place)');
    this.calling = { op: 'broadcast', dtype: tensor.dtype, shape: tensor.shape, root: src };
    await this._broadcast(tensor, src);
    return tensor;
  }

  /** Sends `tensor` to group rank `dst` (default: the next rank). */
  async send(tensor: Tensor, dst = (this.rankInGroup + 1) % this.worldSize): Promise<void> {
    this.checkTensor('tensor', tensor);
    this.checkPeer('dst', dst, false);
    const staged = tensor.contiguous();
    this.calling = { op: 'send', dtype: tensor.dtype, shape: tensor.shape };
    await this._send(staged, dst);
    disposeCopy(staged, tensor);
  }

  /** Receives a tensor of `shape` and `dtype` from group rank `src` (default: the previous rank). */
  async recv(
    shape: readonly number[],
    dtype: DType,
    src = (this.rankInGroup - 1 + this.worldSize) % this.worldSize,
  ): Promise<Tensor> {
    this.checkPeer('src', src, false);
    const out = Tensor.empty(shape, { dtype, device: this.device });
    this.calling = { op: 'recv', dtype, shape };
    await this._recv(out, src);
    return out;
  }

  protected checkTensor(argument: string, t: Tensor): void {
    if (!(t instanceof Tensor)) throw new InvalidArgumentError(argument, `expected a Tensor, got ${typeof t}`);
    if (t.device !== this.device) {
      throw new InvalidArgumentError(
        argument,
        `this communicator of group '${this.groupName}' works on ${this.device}, but the tensor is on ${t.device}`,
      );
    }
  }

  protected checkReduce(t: Tensor, op: ReduceOp): void {
    if (!reduceOps.includes(op))
      throw new InvalidArgumentError('op', `unknown reduce op '${op}'; use one of ${reduceOps.join(', ')}`);
    if (unreducible.has(t.dtype)) {
      throw new InvalidArgumentError(
        'dtype',
        `${t.dtype} cannot be reduced (NCCL has no fp8 reductions); it can be gathered, broadcast or sent`,
      );
    }
  }

  protected checkPeer(argument: string, peer: number, selfAllowed: boolean): void {
    checkRank(argument, peer, this.worldSize, this.groupName);
    if (!selfAllowed && peer === this.rankInGroup) {
      throw new InvalidArgumentError(argument, `rank ${peer} cannot send to or receive from itself`);
    }
  }

  protected checkSizes(sizes: readonly number[]): void {
    if (!Array.isArray(sizes) || sizes.length !== this.worldSize) {
      throw new InvalidArgumentError(
        'sizes',
        `expected ${this.worldSize} sizes (one per rank), got ${Array.isArray(sizes) ? sizes.length : typeof sizes}`,
      );
    }
    if (!sizes.every((s) => Number.isInteger(s) && s >= 0)) {
      throw new InvalidArgumentError('sizes', `sizes must be non-negative integers, got [${sizes.join(', ')}]`);
    }
  }
}

/**
 * A new contiguous tensor of the contiguous `t`'s shape, dtype and device: Tensor.empty
 * without validating again what `t` already holds (every all-reduce allocates one).
 */
function emptyLike(t: Tensor): Tensor {
  return new Tensor(allocateLike(t, t.nbytes), t.dtype, t.shape, t.strides);
}

/**
 * A new contiguous tensor like the contiguous `t` with `rows` slices along dim 0 (the
 * output of a gather or scatter), likewise without validating `t` again.
 */
function emptyRows(t: Tensor, rows: number): Tensor {
  const shape = t.shape.slice();
  shape[0] = rows;
  let numel = 1;
  for (const d of shape) numel *= d;
  return new Tensor(allocateLike(t, numel * t.itemsize), t.dtype, shape);
}

function allocateLike(t: Tensor, bytes: number): DeviceStorage | HostStorage {
  const s = t.storage;
  return s.kind === 'device' ? DeviceStorage.allocate(s.ordinal, bytes) : HostStorage.allocate(bytes);
}

/**
 * `t` with dim `d` moved to the front, contiguous: `t` itself when `d` is 0 and `t` is
 * contiguous (the common case: 1-D tensors, dim 0), otherwise a view or a copy.
 */
function frontDim(t: Tensor, d: number): Tensor {
  return (d === 0 ? t : t.movedim(d, 0)).contiguous();
}

/** A dim-0 result with dim 0 moved back to `d`, contiguous; the dim-0 block is freed when it was copied. */
function backDim(t: Tensor, d: number): Tensor {
  if (d === 0) return t;
  const out = t.movedim(0, d).contiguous();
  disposeCopy(t, out);
  return out;
}

/**
 * Frees `staged` (stream-ordered, after the work already enqueued on it) when it is a
 * copy rather than a view of `original`; a view shares the caller's storage.
 */
function disposeCopy(staged: Tensor, original: Tensor): void {
  if (staged.storage !== original.storage) staged.dispose();
}
