/**
 * vLLM's GroupCoordinator (vllm/distributed/parallel_state.py): one logical group of ranks with a control
 * plane (a StatelessProcessGroup over the shared store: objects, metadata, barriers)
 * and a data plane (a DeviceCommunicator: NCCL on GPUs, the CPU communicator
 * otherwise). `src`/`dst` are group-local everywhere, as in vLLM; any `src` works.
 */
import { setting } from '../env.ts';
import { InvalidArgumentError } from '../errors.ts';
import { MessageQueue, createCommunicator, nodeKey, split, type DeviceCommunicator } from '../comm/index.ts';
import { StatelessProcessGroup, type Store } from '../store/index.ts';
import { Tensor, type DType } from '../tensor/index.ts';
import { captureGraph, type CudaGraph, type GraphCaptureContext } from './graph.ts';
import { isTensorMetadata, splitTensorDict, type MetadataEntry, type TensorDict } from './tensor-dict.ts';
import { receiverWire, senderWire, type Wire, type WireSlot } from './dict-wire.ts';
import { checkRank, normalizeDim } from '../validate.ts';

/** Options of {@link GroupCoordinator.create}. */
export interface GroupCoordinatorOptions {
  /** Every group of this kind, as lists of global ranks; the caller is in exactly one. */
  groupRanks: number[][];
  /** The caller's global rank. */
  rank: number;
  localRank: number;
  /** The job's store; each group works under its own prefix. */
  store: Store;
  backend: 'nccl' | 'cpu';
  /** `cuda:N` or `cpu`. */
  device: string;
  /** Base name: `world`, `tp`, `pp`, `dp`, `ep`, … (parallel_state.py: _get_unique_name). */
  groupName: string;
  timeoutMs: number;
  /** Deadline of communicator init; default timeoutMs. */
  initTimeoutMs?: number;
  abortSignal?: AbortSignal;
  /** False for the world group, as in vLLM: it has no device communicator. */
  useDeviceCommunicator?: boolean;
  /**
   * NCCL: split this kind's communicators from this group's (ncclCommSplit) instead of
   * a unique id and an init per group. Every rank of that group must then create this
   * kind, which vLLM's layouts do (each rank is in exactly one group of each kind).
   */
  splitFrom?: GroupCoordinator;
  /** NCCL: keep what {@link splitFrom} needs (the world group, whose communicator subgroups split). */
  splittable?: boolean;
}

const nameCounters = new Map<string, number>();

/** vLLM's `_get_unique_name`: `tp:0`, `tp:1`, … per process. */
function uniqueNameFor(base: string): string {
  const n = nameCounters.get(base) ?? 0;
  nameCounters.set(base, n + 1);
  return `${base}:${n}`;
}

const NO_COMMUNICATOR = 'No device communicator found';

/**
 * The broadcast queues' ring: vLLM's GroupCoordinator uses 4 MiB × 6 chunks. Objects
 * and tensor-dict metadata past a chunk still go through, out of band.
 */

/** The all-gather slicing of sendTensorDict/recvTensorDict (GroupCoordinator.send_tensor_dict). */
export interface AllGatherOptions {
  /** Group whose ranks each send one slice (usually TP); the receivers all-gather. */
  allGatherGroup?: GroupCoordinator;
  /** Per-key override of the divisibility rule; an empty object changes nothing (as in vLLM). */
  allGatherTensors?: Record<string, boolean>;
}

function useAllGather(key: string, numel: number, agWorld: number, overrides?: Record<string, boolean>): boolean {
  if (overrides && Object.keys(overrides).length > 0 && key in overrides) return overrides[key];
  return numel % agWorld === 0;
}

/** A group of ranks with vLLM's collective, object and tensor-dict operations. */
export class GroupCoordinator {
  readonly uniqueName: string;
  /** Global rank of this process. */
  readonly rank: number;
  /** Global ranks of the group, in group order. */
  readonly ranks: readonly number[];
  readonly worldSize: number;
  readonly rankInGroup: number;
  readonly localRank: number;
  readonly device: string;
  readonly backend: 'nccl' | 'cpu';
  /** Control plane: objects, tensor-dict metadata, barriers, CPU tensors. */
  readonly cpuGroup: StatelessProcessGroup;
  /** Data plane; null for world size 1 and for groups built without one. */
  readonly deviceCommunicator: DeviceCommunicator | null;
  private cpuCommunicator: Promise<DeviceCommunicator> | null = null;
  private sameNode: Promise<boolean> | null = null;
  private barrierToken: Tensor | null = null;
  /** Broadcast queue per source group rank, created on first use (collectively). */
  private readonly queues = new Map<number, Promise<MessageQueue>>();
  private readonly opts: GroupCoordinatorOptions;

  private constructor(
    opts: GroupCoordinatorOptions,
    ranks: number[],
    uniqueName: string,
    cpuGroup: StatelessProcessGroup,
    comm: DeviceCommunicator | null,
  ) {
    this.opts = opts;
    this.uniqueName = uniqueName;
    this.rank = opts.rank;
    this.ranks = ranks;
    this.worldSize = ranks.length;
    this.rankInGroup = ranks.indexOf(opts.rank);
    this.localRank = opts.localRank;
    this.device = opts.device;
    this.backend = opts.backend;
    this.cpuGroup = cpuGroup;
    this.deviceCommunicator = comm;
  }

  /** Builds the caller's group of this kind; every member must call it. */
  static async create(opts: GroupCoordinatorOptions): Promise<GroupCoordinator> {
    const index = opts.groupRanks.findIndex((g) => g.includes(opts.rank));
    if (index < 0)
      throw new InvalidArgumentError('groupRanks', `rank ${opts.rank} is in none of the ${opts.groupName} groups`);
    const ranks = opts.groupRanks[index];
    const uniqueName = uniqueNameFor(opts.groupName);
    // Different groups of one kind share the base name: the list index keeps their keys apart.
    const prefix = `group/${opts.groupName}/${index}`;
    const cpuGroup = StatelessProcessGroup.fromStore(
      opts.store.withPrefix(prefix),
      ranks.indexOf(opts.rank),
      ranks.length,
      {
        storeTimeoutMs: opts.timeoutMs,
      },
    );
    let comm: DeviceCommunicator | null = null;
    const common = {
      group: cpuGroup,
      groupName: `${uniqueName}/${index}`,
      timeoutMs: opts.timeoutMs,
      abortSignal: opts.abortSignal,
    };
    // Subgroups split from the parent's communicator where one was made splittable (NCCL).
    const parent = opts.backend === 'nccl' ? (opts.splitFrom?.deviceCommunicator ?? null) : null;
    if (!(opts.useDeviceCommunicator ?? true)) {
      // The world group of vLLM: no data plane.
    } else if (parent) {
      // ncclCommSplit is collective over the parent: when any group of this kind needs a
      // communicator, every rank splits, a rank of a one-rank group with no color.
      if (opts.groupRanks.some((g) => g.length > 1)) {
        comm = await split(parent, {
          ...common,
          color: ranks.length > 1 ? index : null,
          key: ranks.indexOf(opts.rank),
          initTimeoutMs: opts.initTimeoutMs,
        });
      }
    } else if (ranks.length > 1) {
      comm = await createCommunicator({
        ...common,
        backend: opts.backend,
        device: opts.device,
        initTimeoutMs: opts.initTimeoutMs,
        splittable: opts.splittable,
      });
    }
    return new GroupCoordinator(opts, ranks, uniqueName, cpuGroup, comm);
  }

  get firstRank(): number {
    return this.ranks[0];
  }
  get lastRank(): number {
    return this.ranks[this.worldSize - 1];
  }
  get isFirstRank(): boolean {
    return this.rank === this.firstRank;
  }
  get isLastRank(): boolean {
    return this.rank === this.lastRank;
  }
  /** Global rank of the next member (wrapping). */
  get nextRank(): number {
    return this.ranks[(this.rankInGroup + 1) % this.worldSize];
  }
  /** Global rank of the previous member (wrapping; non-negative modulo, as Python's %). */
  get prevRank(): number {
    return this.ranks[(((this.rankInGroup - 1) % this.worldSize) + this.worldSize) % this.worldSize];
  }

  // The operations that forward to the device communicator are not async functions: an
  // async function returning another promise costs two more microtask turns per call
  // (~0.15 µs, more beside NCCL). Their own checks still end in a rejection, not a throw.

  /** Out-of-place all-reduce; world size 1 returns `t` itself. */
  allReduce(t: Tensor): Promise<Tensor> {
    if (this.worldSize === 1) return Promise.resolve(t);
    return this.deviceCommunicator?.allReduce(t) ?? this.noCommunicator();
  }

  allGather(t: Tensor, dim = -1): Promise<Tensor> {
    return this.dimShortCut(t, dim) ?? this.deviceCommunicator?.allGather(t, dim) ?? this.noCommunicator();
  }

  /** No world-size-1 short cut: raises without a communicator, as vLLM's GroupCoordinator.send does. */
  allGatherv(t: Tensor, sizes: readonly number[], dim = 0): Promise<Tensor> {
    return this.deviceCommunicator?.allGatherv(t, sizes, dim) ?? this.noCommunicator();
  }

  reduceScatter(t: Tensor, dim = -1): Promise<Tensor> {
    return this.dimShortCut(t, dim) ?? this.deviceCommunicator?.reduceScatter(t, dim) ?? this.noCommunicator();
  }

  reduceScatterv(t: Tensor, sizes: readonly number[], dim = 0): Promise<Tensor> {
    return this.deviceCommunicator?.reduceScatterv(t, sizes, dim) ?? this.noCommunicator();
  }

  async gather(t: Tensor, dst = 0, dim = -1): Promise<Tensor | null> {
    this.checkPeer('dst', dst);
    if (this.worldSize === 1) return t;
    return this.comm().gather(t, dst, dim);
  }

  async broadcast(t: Tensor, src = 0): Promise<Tensor> {
    this.checkPeer('src', src);
    if (this.worldSize === 1) return t;
    return this.dataPlaneFor(t).then((c) => c.broadcast(t, src));
  }

  send(t: Tensor, dst?: number): Promise<void> {
    return this.deviceCommunicator?.send(t, dst ?? (this.rankInGroup + 1) % this.worldSize) ?? this.noCommunicator();
  }

  recv(shape: readonly number[], dtype: DType, src?: number): Promise<Tensor> {
    return (
      this.deviceCommunicator?.recv(shape, dtype, src ?? (this.rankInGroup - 1 + this.worldSize) % this.worldSize) ??
      this.noCommunicator()
    );
  }

  /**
   * Broadcasts a structured-cloneable object from group rank `src` through the shared
   * memory queue of that source (vLLM's shm_broadcast.py: MessageQueue; sockets to ranks on other nodes). The
   * source gets its own object back.
   */
  async broadcastObject<T>(obj?: T, src = 0): Promise<T> {
    this.checkPeer('src', src);
    if (this.worldSize === 1) return obj as T;
    return (await this.queueFor(src)).broadcastObject<T>(this.rankInGroup === src ? obj : undefined);
  }

  async sendObject(obj: unknown, dst: number): Promise<void> {
    this.checkPeer('dst', dst);
    if (dst === this.rankInGroup)
      throw new InvalidArgumentError(
        'dst',
        'Invalid destination rank. Destination rank is the same as the current rank.',
      );
    return this.cpuGroup.sendObj(obj, dst);
  }

  async recvObject<T = unknown>(src: number): Promise<T> {
    this.checkPeer('src', src);
    if (src === this.rankInGroup)
      throw new InvalidArgumentError('src', 'Invalid source rank. Source rank is the same as the current rank.');
    return this.cpuGroup.recvObj(src) as Promise<T>;
  }

  /**
   * Barrier on the host only (an NCCL barrier would touch the device). Ranks of
   * one node meet in shared memory (a one-element all-reduce of the CPU communicator:
   * µs, and they leave within µs of each other); groups across nodes use the store.
   */
  async barrier(): Promise<void> {
    if (this.worldSize === 1) return;
    this.sameNode ??= this.cpuGroup.allGatherObj(nodeKey()).then((keys) => keys.every((k) => k === keys[0]));
    if (!(await this.sameNode)) return this.cpuGroup.barrier(this.opts.timeoutMs);
    this.barrierToken ??= Tensor.zeros([1], { dtype: 'int32' });
    await (await this.dataPlaneForDevice('cpu')).allReduce(this.barrierToken);
  }

  /**
   * Broadcasts a dict of tensors and plain values from `src` (any group rank). The
   * metadata goes through the source's message queue; non-empty tensors follow in dict order, CPU
   * tensors over the CPU data plane and device tensors over the device communicator.
   * Returns the original dict at the source and a new dict elsewhere.
   */
  async broadcastTensorDict(tensorDict?: TensorDict | null, src = 0): Promise<TensorDict | null | undefined> {
    this.checkPeer('src', src);
    if (this.worldSize === 1) return tensorDict;
    if (this.rankInGroup === src) {
      const { metadata, tensors } = splitTensorDict(tensorDict as TensorDict);
      for (const [i, t] of tensors.entries()) {
        if (t.device !== 'cpu' && t.device !== this.device) {
          throw new InvalidArgumentError(
            'tensorDict',
            `tensor ${i} of the dict is on ${t.device}, but group '${this.uniqueName}' works on ${this.device}`,
          );
        }
      }
      // The wire first: whatever it refuses fails here, before any rank was told to expect it.
      const slots = tensors.map((t): WireSlot => ({ dtype: t.dtype, shape: [...t.shape], onCpu: t.device === 'cpu' }));
      const wire = senderWire(tensors, slots);
      try {
        await (await this.queueFor(src)).enqueue(metadata);
      } catch (err) {
        wire.finish();
        throw err;
      }
      await this.broadcastWire(wire, src);
      return tensorDict;
    }
    const metadata = await (await this.queueFor(src)).dequeue<MetadataEntry[]>();
    const { dict, slots } = this.unpackMetadata(metadata);
    const { tensors, wire } = receiverWire(
      slots.map(([, dtype, shape, onCpu]) => ({ dtype, shape, onCpu })),
      this.device,
    );
    for (const [i, [key]] of slots.entries()) dict[key] = tensors[i];
    await this.broadcastWire(wire, src);
    return dict;
  }

  /**
   * Sends a tensor dict to group rank `dst` (default: the next rank). Returns null.
   * With `allGatherGroup` (usually TP), a tensor whose numel divides by that group's
   * size goes as this rank's slice only, and the receiving group all-gathers it back
   * (as GroupCoordinator.send_tensor_dict); `allGatherTensors` overrides that rule per key when non-empty.
   */
  async sendTensorDict(tensorDict: TensorDict, dst?: number, opts: AllGatherOptions = {}): Promise<TensorDict | null> {
    if (this.worldSize === 1) return tensorDict;
    const peer = dst ?? (this.rankInGroup + 1) % this.worldSize;
    this.checkPeer('dst', peer);
    const { metadata, tensors } = splitTensorDict(tensorDict);
    await this.sendObject(metadata, peer);
    const keys = metadata.filter(([, v]) => isTensorMetadata(v)).map(([k]) => k);
    for (const [i, t] of tensors.entries()) {
      if (t.numel === 0) continue;
      const ag = opts.allGatherGroup;
      const part =
        ag && useAllGather(keys[i], t.numel, ag.worldSize, opts.allGatherTensors)
          ? t.contiguous().reshape([ag.worldSize, -1]).narrow(0, ag.rankInGroup, 1).reshape([-1])
          : t;
      await (await this.dataPlaneFor(t)).send(part, peer);
    }
    return null;
  }

  /**
   * Receives a tensor dict from group rank `src` (default: the previous rank); null at
   * world size 1. Pass the same `allGatherGroup`/`allGatherTensors` as the sender.
   */
  async recvTensorDict(src?: number, opts: AllGatherOptions = {}): Promise<TensorDict | null> {
    if (this.worldSize === 1) return null;
    const peer = src ?? (this.rankInGroup - 1 + this.worldSize) % this.worldSize;
    this.checkPeer('src', peer);
    const metadata = await this.recvObject<MetadataEntry[]>(peer);
    const { dict, slots } = this.unpackMetadata(metadata);
    for (const [key, dtype, shape, onCpu] of slots) {
      const device = onCpu ? 'cpu' : this.device;
      const numel = shape.reduce((a, b) => a * b, 1);
      const ag = opts.allGatherGroup;
      if (numel === 0) {
        // Empty tensors are never sent (as in vLLM, both sides skip them): allocate them here.
        dict[key] = Tensor.empty(shape, { dtype, device });
      } else if (ag && useAllGather(key, numel, ag.worldSize, opts.allGatherTensors)) {
        const slice = await (await this.dataPlaneForDevice(device)).recv([numel / ag.worldSize], dtype, peer);
        dict[key] = (await ag.allGather(slice, 0)).reshape(shape);
      } else {
        dict[key] = await (await this.dataPlaneForDevice(device)).recv(shape, dtype, peer);
      }
    }
    return dict;
  }

  /**
   * Captures the device work `fn` enqueues (this group's collectives included) into a
   * CUDA graph on its own stream (GroupCoordinator.graph_capture). Replay with `graph.replay()`; the
   * tensors `fn` created hold each replay's results. NCCL backend only.
   */
  async graphCapture<T>(
    fn: (ctx: GraphCaptureContext) => Promise<T> | T,
    context?: GraphCaptureContext,
  ): Promise<CudaGraph<T>> {
    return captureGraph(this.backend, fn, context);
  }

  /**
   * Releases the communicators and the control plane; idempotent. Collectives issued
   * before it complete first (within the group's deadline), so their outputs stay
   * readable without a synchronize (GroupCoordinator.destroy in vLLM hands the device
   * group to torch.distributed.destroy_process_group, whose NCCL shutdown flushes).
   */
  async destroy(): Promise<void> {
    const queues = [...this.queues.values()];
    this.queues.clear();
    await Promise.all(
      queues.map((q) =>
        q.then(
          (mq) => mq.close(),
          () => undefined,
        ),
      ),
    );
    await this.deviceCommunicator?.close();
    if (this.cpuCommunicator) await (await this.cpuCommunicator).close();
    await this.cpuGroup.close();
  }

  /** Broadcasts a dict's wire (./dict-wire.ts): device buffers as one NCCL group, host ones over the CPU data plane. */
  private async broadcastWire(wire: Wire, src: number): Promise<void> {
    try {
      const { device, host } = wire;
      if (device.length > 0) {
        const comm = this.comm();
        const all = async () => {
          for (const t of device) await comm.broadcast(t, src);
        };
        // Several broadcasts launch as one NCCL group (no-op on the CPU backend).
        if (device.length > 1) await comm.grouped(all);
        else await all();
      }
      if (host.length > 0) {
        const plane = await this.dataPlaneForDevice('cpu');
        for (const t of host) await plane.broadcast(t, src);
      }
    } finally {
      wire.finish();
    }
  }

  /**
   * The receiver's dict with plain values in place, and one slot per tensor (key,
   * dtype, shape, on CPU) in dict order, for the caller to allocate or receive.
   */
  private unpackMetadata(metadata: MetadataEntry[]): { dict: TensorDict; slots: [string, DType, number[], boolean][] } {
    const dict: TensorDict = {};
    const slots: [string, DType, number[], boolean][] = [];
    for (const [key, value] of metadata) {
      dict[key] = value;
      if (isTensorMetadata(value)) slots.push([key, value.__tensor[1], value.__tensor[2], value.__tensor[0] === 'cpu']);
    }
    return { dict, slots };
  }

  /** The communicator that moves `t`: the device one, or a CPU one for host tensors on a GPU group. */
  private dataPlaneFor(t: Tensor): Promise<DeviceCommunicator> {
    return this.dataPlaneForDevice(t.device);
  }

  private async dataPlaneForDevice(device: string): Promise<DeviceCommunicator> {
    if (device !== 'cpu' || (this.backend === 'cpu' && this.deviceCommunicator)) return this.comm();
    this.cpuCommunicator ??= createCommunicator({
      backend: 'cpu',
      device: 'cpu',
      group: StatelessProcessGroup.fromStore(
        this.opts.store.withPrefix(`group/${this.opts.groupName}/cpu/${this.ranks.join(',')}`),
        this.rankInGroup,
        this.worldSize,
        { storeTimeoutMs: this.opts.timeoutMs },
      ),
      groupName: `${this.uniqueName}/cpu`,
      timeoutMs: this.opts.timeoutMs,
      abortSignal: this.opts.abortSignal,
    });
    return this.cpuCommunicator;
  }

  /** The broadcast queue written by group rank `src`; the first call for a source is collective. */
  private queueFor(src: number): Promise<MessageQueue> {
    let q = this.queues.get(src);
    if (!q) {
      q = MessageQueue.createFromGroup(
        this.cpuGroup,
        setting('GPUGROUP_MQ_CHUNK_BYTES'),
        setting('GPUGROUP_MQ_CHUNKS'),
        src,
        {
          timeoutMs: this.opts.timeoutMs,
          abortSignal: this.opts.abortSignal,
          ranks: this.ranks,
          name: `${this.uniqueName}/broadcast-from-${src}`,
        },
      );
      this.queues.set(src, q);
    }
    return q;
  }

  private comm(): DeviceCommunicator {
    if (!this.deviceCommunicator) throw this.missingCommunicatorError();
    return this.deviceCommunicator;
  }

  private missingCommunicatorError(): InvalidArgumentError {
    return new InvalidArgumentError(
      'group',
      `${NO_COMMUNICATOR} (group '${this.uniqueName}' of world size ${this.worldSize})`,
    );
  }

  /** The rejection of an operation on a group without a device communicator. */
  private noCommunicator(): Promise<never> {
    return Promise.reject(this.missingCommunicatorError());
  }

  /**
   * What an operation along `dim` of `t` answers before the communicator: the rejection
   * for a bad `dim`, `t` itself at world size 1, or null when the communicator runs it.
   */
  private dimShortCut(t: Tensor, dim: number): Promise<Tensor> | null {
    try {
      normalizeDim(dim, t.shape);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.worldSize === 1 ? Promise.resolve(t) : null;
  }

  private checkPeer(argument: string, peer: number): void {
    checkRank(argument, peer, this.worldSize, this.uniqueName);
  }
}
