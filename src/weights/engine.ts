/**
 * vLLM's weight transfer engine (weight_transfer/base.py, nccl_engine.py): the abstract base and the NCCL
 * engine. The trainer side is static (trainerInit, trainerSendWeights), as in vLLM;
 * the inference side is an engine object per rank (initTransferEngine,
 * receiveWeights, shutdown).
 *
 * Deliberate changes from vLLM:
 * - Every update starts with a control message (./control.ts): a worker whose update
 *   info disagrees fails the update on every party, instead of hanging in NCCL.
 * - trainerInit returns a {@link WeightTransferGroup} (communicator + store), not the
 *   bare communicator: the control message needs the store.
 * - The trainer's items are collected, and postIterFunc applied, before any data
 *   moves, so that the announcement describes exactly what is sent.
 * - Both sides resolve once the transfer has completed (device: stream drained),
 *   so a failure is a typed error from the call, not a later surprise.
 * - On `cpu` the engine runs on the CPU communicator (what CI exercises).
 */
import { InvalidArgumentError, WeightTransferNotInitializedError } from '../errors.ts';
import { Stream, Tensor, currentDevice, enqueueOn, type DType } from '../tensor/index.ts';
import { acceptUpdate, announceUpdate, type UpdateAnnouncement } from './control.ts';

import { packedBroadcastConsumer, packedBroadcastProducer, type NamedTensors } from './packed-broadcast.ts';
import { WeightTransferGroup, type WeightTransferGroupOptions } from './transfer-group.ts';
import {
  DEFAULT_PACKED_BUFFER_SIZE_BYTES,
  DEFAULT_PACKED_NUM_BUFFERS,
  parseNcclInitInfo,
  parseNcclUpdateInfo,
  type NcclWeightTransferInitInfo,
  type NcclWeightTransferUpdateInfo,
} from './types.ts';
import { positiveInt } from '../validate.ts';

/** vLLM's `load_weights`: called with each batch of received weights (once per tensor unpacked, once per buffer packed). */
export type LoadWeights = (weights: NamedTensors) => unknown;

/** vLLM's WeightTransferEngine[TInit, TUpdate]: what every backend implements. */
export abstract class WeightTransferEngine<TInit, TUpdate> {
  /** vLLM's `parse_init_info`. */
  abstract parseInitInfo(obj: unknown): TInit;
  /** vLLM's `parse_update_info`. */
  abstract parseUpdateInfo(obj: unknown): TUpdate;
  /** Joins the transfer group (collective with the trainer and the other workers). */
  abstract initTransferEngine(info: TInit | Record<string, unknown>): Promise<void>;
  /** Receives one update, handing the weights to `loadWeights` as they arrive. */
  abstract receiveWeights(updateInfo: TUpdate | Record<string, unknown>, loadWeights: LoadWeights): Promise<void>;
  /** Leaves the transfer group; idempotent. */
  abstract shutdown(): Promise<void>;
}

/** vLLM's parallel_config, as far as the rank arithmetic needs it. */
export interface WeightTransferParallelInfo {
  /** Rank inside this DP replica (0 .. worldSize-1). */
  rank: number;
  /** Ranks per DP replica: TP × PP. */
  worldSize: number;
  /** This replica's data-parallel rank. */
  dpRank: number;
}

/** Options of the inference-side engine. */
export interface NcclWeightTransferEngineOptions {
  /** Where this worker sits; default rank 0 of a 1-rank replica, DP rank 0. */
  parallel?: WeightTransferParallelInfo;
  /** `cuda:N` or `cpu`. Default: this thread's current CUDA device. */
  device?: string;
  /** Deadline of every wait, in ms. Default 120 000. */
  timeoutMs?: number;
  abortSignal?: AbortSignal;
  /** CPU only: the CPU communicator's transport (default: picked automatically). */
  cpuTransport?: WeightTransferGroupOptions['cpuTransport'];
}

/** What {@link NcclWeightTransferEngine.forRank} reads from a rank: a RankContext fits. */
export interface RankLike {
  device: string;
  timeoutMs?: number;
  abortSignal?: AbortSignal;
  tp: { rankInGroup: number; worldSize: number };
  pp: { rankInGroup: number; worldSize: number };
  dp: { rankInGroup: number };
}

/** Trainer-side options of {@link NcclWeightTransferEngine.trainerInit}. */
export type TrainerInitOptions = Partial<WeightTransferGroupOptions>;

/** vLLM's trainer_args. */
export interface TrainerSendArgs<Item = [string, Tensor]> {
  /** The group {@link NcclWeightTransferEngine.trainerInit} returned. */
  group: WeightTransferGroup;
  /** Group rank that sends: the trainer. Default 0. */
  src?: number;
  /** Item → tensor to send. Default: the tensor of `[name, tensor]`. */
  postIterFunc?: (item: Item) => Tensor;
  packed?: boolean;
  /** Device only: stream to send on (the weights' producer stream). Default: the current stream. */
  stream?: Stream;
  packedBufferSizeBytes?: number;
  packedNumBuffers?: number;
}

const defaultPostIter = (item: unknown): Tensor => (item as [string, Tensor])[1];

function defaultDevice(device: string | undefined): string {
  return device ?? `cuda:${currentDevice()}`;
}

/** The NCCL weight transfer engine (weight_transfer/nccl_engine.py), on NCCL or the CPU communicator. */
export class NcclWeightTransferEngine extends WeightTransferEngine<
  NcclWeightTransferInitInfo,
  NcclWeightTransferUpdateInfo
> {
  private readonly parallel: WeightTransferParallelInfo;
  private readonly opts: NcclWeightTransferEngineOptions;
  private group: WeightTransferGroup | null = null;
  private receiving = false;

  constructor(opts: NcclWeightTransferEngineOptions = {}) {
    super();
    const p = opts.parallel ?? { rank: 0, worldSize: 1, dpRank: 0 };
    const worldSize = positiveInt('parallel.worldSize', p.worldSize);
    if (!Number.isInteger(p.rank) || p.rank < 0 || p.rank >= worldSize)
      throw new InvalidArgumentError('parallel.rank', `${p.rank} is out of range [0, ${worldSize})`);
    if (!Number.isInteger(p.dpRank) || p.dpRank < 0)
      throw new InvalidArgumentError('parallel.dpRank', `must be a non-negative integer, got ${p.dpRank}`);
    this.parallel = { ...p };
    this.opts = opts;
  }

  /** An engine for a launched rank: device, deadline, abort signal and DP/TP/PP position from its context. */
  static forRank(
    ctx: RankLike,
    opts: Omit<NcclWeightTransferEngineOptions, 'parallel'> = {},
  ): NcclWeightTransferEngine {
    return new NcclWeightTransferEngine({
      device: ctx.device,
      timeoutMs: ctx.timeoutMs,
      abortSignal: ctx.abortSignal,
      ...opts,
      parallel: {
        rank: ctx.pp.rankInGroup * ctx.tp.worldSize + ctx.tp.rankInGroup,
        worldSize: ctx.tp.worldSize * ctx.pp.worldSize,
        dpRank: ctx.dp.rankInGroup,
      },
    });
  }

  override parseInitInfo(obj: unknown): NcclWeightTransferInitInfo {
    return parseNcclInitInfo(obj);
  }

  override parseUpdateInfo(obj: unknown): NcclWeightTransferUpdateInfo {
    return parseNcclUpdateInfo(obj);
  }

  /** True between initTransferEngine and shutdown. */
  get initialized(): boolean {
    return this.group !== null;
  }

  /** This worker's rank in the transfer group: dpRank × worldSizePerDp + rank + rankOffset. */
  transferRank(info: NcclWeightTransferInitInfo): number {
    return this.parallel.dpRank * this.parallel.worldSize + this.parallel.rank + info.rankOffset;
  }

  /**
   * Joins the transfer group as rank dpRank × worldSizePerDp + rank + rankOffset
   * (as nccl_engine.py); collective with the trainer's trainerInit and the other workers.
   */
  override async initTransferEngine(initInfo: NcclWeightTransferInitInfo | Record<string, unknown>): Promise<void> {
    const info = parseNcclInitInfo(initInfo);
    if (this.group)
      throw new InvalidArgumentError('initInfo', 'this engine is already initialized; call shutdown() first');
    const rank = this.transferRank(info);
    if (rank < 1 || rank >= info.worldSize) {
      throw new InvalidArgumentError(
        'initInfo',
        `this worker's transfer rank is ${rank} (dpRank ${this.parallel.dpRank} × ${this.parallel.worldSize} + rank ` +
          `${this.parallel.rank} + rankOffset ${info.rankOffset}), ` +
          `outside [1, ${info.worldSize}): rank 0 is the trainer, and worldSize must count every worker`,
      );
    }
    this.group = await WeightTransferGroup.create(info, rank, {
      device: defaultDevice(this.opts.device),
      timeoutMs: this.opts.timeoutMs,
      abortSignal: this.opts.abortSignal,
      cpuTransport: this.opts.cpuTransport,
    });
  }

  /**
   * Receives one update from the trainer (group rank 0). Before any data moves, the
   * trainer's announcement is checked against `updateInfo`; a disagreement throws
   * WeightTransferMismatchError here and at the trainer. Then each tensor (unpacked) or
   * each buffer's tensors (packed) go to `loadWeights` as soon as they are in. Resolves
   * once the whole update has arrived.
   */
  override async receiveWeights(
    updateInfo: NcclWeightTransferUpdateInfo | Record<string, unknown>,
    loadWeights: LoadWeights,
  ): Promise<void> {
    const g = this.group;
    if (!g) throw new WeightTransferNotInitializedError();
    const info = parseNcclUpdateInfo(updateInfo);
    if (typeof loadWeights !== 'function')
      throw new InvalidArgumentError('loadWeights', `expected a function, got ${typeof loadWeights}`);
    // Two receives at once would read each other's control messages and buffers.
    if (this.receiving)
      throw new InvalidArgumentError(
        'updateInfo',
        'another receiveWeights is still running on this engine; updates run one at a time',
      );
    this.receiving = true;
    try {
      await this.receive(g, info, loadWeights);
    } finally {
      this.receiving = false;
    }
  }

  private async receive(
    g: WeightTransferGroup,
    info: NcclWeightTransferUpdateInfo,
    loadWeights: LoadWeights,
  ): Promise<void> {
    await acceptUpdate(g.processGroup, 0, announcementOf(info));
    await g.guard(() => this.receiveData(g, info, loadWeights));
  }

  private async receiveData(
    g: WeightTransferGroup,
    info: NcclWeightTransferUpdateInfo,
    loadWeights: LoadWeights,
  ): Promise<void> {
    const comm = g.communicator;
    if (info.packed) {
      const specs = info.names.map((name, i) => ({ name, dtype: info.dtypeNames[i], shape: info.shapes[i] }));
      await packedBroadcastConsumer(
        specs,
        comm,
        {
          src: 0,
          bufferSizeBytes: info.packedBufferSizeBytes,
          numBuffers: info.packedNumBuffers,
          timeoutMs: g.timeoutMs,
        },
        loadWeights,
      );
    } else {
      // Tensor i+1's broadcast is issued before loadWeights gets tensor i: the worker's
      // own host work on a tensor overlaps the next tensor's transfer.
      const issue = (i: number): { w: Tensor; received: Promise<unknown> } => {
        const w = Tensor.empty(info.shapes[i], { dtype: info.dtypeNames[i], device: comm.device });
        // Empty tensors are never sent (as in vLLM); the trainer skips them too.
        const received = w.numel > 0 ? comm.broadcast(w, 0) : Promise.resolve();
        received.catch(() => undefined); // awaited below; a failure also breaks the group
        return { w, received };
      };
      let next = info.names.length > 0 ? issue(0) : null;
      for (let i = 0; next !== null; i++) {
        const { w, received } = next;
        await received;
        next = i + 1 < info.names.length ? issue(i + 1) : null;
        await loadWeights([[info.names[i], w]]);
      }
    }
    await comm.synchronize(g.timeoutMs);
  }

  /** Leaves the transfer group (vLLM drops the communicator); idempotent. */
  override async shutdown(): Promise<void> {
    const g = this.group;
    this.group = null;
    await g?.close();
  }

  /**
   * vLLM's `trainer_init`: joins the transfer group as rank 0 (serving its store at
   * masterAddress:masterPort). Collective with every worker's initTransferEngine.
   * `opts.device` defaults to this thread's current CUDA device; pass `cpu` for the
   * CPU backend.
   */
  static async trainerInit(
    initInfo: NcclWeightTransferInitInfo | Record<string, unknown>,
    opts: TrainerInitOptions = {},
  ): Promise<WeightTransferGroup> {
    const info = parseNcclInitInfo(initInfo);
    return WeightTransferGroup.create(info, 0, { ...opts, device: defaultDevice(opts.device) });
  }

  /**
   * vLLM's `trainer_send_weights`: broadcasts every `[name, tensor]` of `weights` to the
   * workers, packed or one broadcast per tensor. Arguments are checked, the items
   * collected and `postIterFunc` applied before anything is sent; then the control
   * message goes out, and a disagreeing worker makes this throw
   * WeightTransferMismatchError with no data moved. Resolves once everything was sent.
   */
  static async trainerSendWeights<Item = [string, Tensor]>(
    weights: Iterable<Item>,
    args: TrainerSendArgs<Item>,
  ): Promise<void> {
    if (!args || !(args.group instanceof WeightTransferGroup))
      throw new InvalidArgumentError('group', 'expected the WeightTransferGroup that trainerInit returned');
    const g = args.group;
    const src = args.src ?? 0;
    if (!Number.isInteger(src) || src < 0 || src >= g.worldSize)
      throw new InvalidArgumentError('src', `rank ${src} is out of range [0, ${g.worldSize})`);
    if (src !== g.rank)
      throw new InvalidArgumentError(
        'src',
        `${src} is not this trainer's rank (${g.rank}) in the transfer group; only the trainer sends`,
      );
    const packed = args.packed ?? false;
    if (typeof packed !== 'boolean')
      throw new InvalidArgumentError('packed', `expected a boolean, got ${typeof packed}`);
    const bufferSizeBytes = positiveInt(
      'packedBufferSizeBytes',
      args.packedBufferSizeBytes ?? DEFAULT_PACKED_BUFFER_SIZE_BYTES,
    );
    const numBuffers = positiveInt('packedNumBuffers', args.packedNumBuffers ?? DEFAULT_PACKED_NUM_BUFFERS);
    const device = g.device;
    if (args.stream !== undefined && (device === 'cpu' || !(args.stream instanceof Stream))) {
      throw new InvalidArgumentError(
        'stream',
        device === 'cpu' ? 'the CPU backend has no streams' : 'expected a Stream',
      );
    }
    const post = (args.postIterFunc ?? defaultPostIter) as (item: Item) => Tensor;
    if (typeof post !== 'function')
      throw new InvalidArgumentError('postIterFunc', `expected a function, got ${typeof post}`);
    if (weights === null || typeof (weights as Iterable<Item>)[Symbol.iterator] !== 'function')
      throw new InvalidArgumentError('weights', 'expected an iterable of [name, tensor]');
    const named: NamedTensors = [];
    for (const item of weights) {
      const name = Array.isArray(item) ? item[0] : undefined;
      if (typeof name !== 'string')
        throw new InvalidArgumentError('weights', `item ${named.length}: expected [name, tensor] with a string name`);
      const t = post(item);
      if (!(t instanceof Tensor))
        throw new InvalidArgumentError('weights', `'${name}': postIterFunc returned ${typeof t}, not a Tensor`);
      if (t.device !== device)
        throw new InvalidArgumentError(
          'weights',
          `'${name}' is on ${t.device}, but the transfer group works on ${device}`,
        );
      named.push([name, t]);
    }
    await announceUpdate(g.processGroup, {
      names: named.map(([n]) => n),
      dtypeNames: named.map(([, t]) => t.dtype),
      shapes: named.map(([, t]) => [...t.shape]),
      packed,
      packedBufferSizeBytes: bufferSizeBytes,
    });
    const comm = g.communicator;
    await g.guard(async () => {
      if (packed) {
        await packedBroadcastProducer(named, comm, {
          src,
          bufferSizeBytes,
          numBuffers,
          stream: args.stream,
          timeoutMs: g.timeoutMs,
        });
        return;
      }
      for (const [, t] of named) {
        if (t.numel === 0) continue;
        await enqueueOn(args.stream, () => {
          const c = t.contiguous();
          const p = comm.broadcast(c, src);
          if (c !== t) c.dispose();
          return p;
        });
      }
      await enqueueOn(args.stream, () => comm.synchronize(g.timeoutMs));
    });
  }
}

/** The announcement a worker expects for `info`. */
function announcementOf(info: NcclWeightTransferUpdateInfo): UpdateAnnouncement {
  return {
    names: info.names,
    dtypeNames: info.dtypeNames as DType[],
    shapes: info.shapes,
    packed: info.packed,
    packedBufferSizeBytes: info.packedBufferSizeBytes,
  };
}
