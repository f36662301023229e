/**
 * The CPU backend's communicator (the role gloo plays for torch, and what CI runs):
 * host tensors move through shared memory — SharedArrayBuffers when every rank is a
 * thread of one process, /dev/shm mappings across processes — with the round protocol
 * of {@link CpuChannel}. Collectives of one communicator run one at a time in call
 * order, as NCCL's do on a stream; send and recv run on per-peer queues beside them,
 * so a ring of sends and receives does not deadlock at any size.
 *
 * Reductions happen on the host in rank order (deterministic: every rank gets the
 * same bits). Large all-reduces are a reduce-scatter then an all-gather through the
 * segments, so each rank reduces 1/n of the elements instead of all of them.
 */
import { availableParallelism } from 'node:os';
import { GroupClosedError } from '../errors.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { DTYPES, dtypeInfo, type StorageArray, type Tensor } from '../tensor/index.ts';
import { opDeadline } from './call-deadline.ts';
import type { OpCall, UserOp } from './op-call.ts';
import { CpuChannel, type OpState, type WaitPolicy } from './cpu-channel.ts';
import { reduceInto, type ReduceSource } from './cpu-reduce.ts';
import { Segments, type CpuTransport } from './cpu-segments.ts';
import { DeviceCommunicator, type ReduceOp } from './device-communicator.ts';

/** Options of {@link CpuCommunicator.create}. */
export interface CpuCommunicatorOptions {
  /** Control plane of the group (rank, world size, store); used only while creating. */
  group: StatelessProcessGroup;
  /** Name used in errors, e.g. `tp:0/1`. */
  groupName: string;
  /** Deadline of every operation, in ms, from the moment it starts. Default 120 000. */
  timeoutMs?: number;
  /** When it fires, pending and later operations reject (RankFailedError if that is the reason, else GroupClosedError). */
  abortSignal?: AbortSignal;
  /** `sab` (threads of one process) or `shm` (/dev/shm, any processes of one host). Default: `sab` when every rank is in this process. */
  transport?: CpuTransport;
  /** Bytes of each of the two collective halves of a rank's segment; larger tensors go in chunks. Default 1 MiB. */
  bufferBytes?: number;
  /** Bytes of each of the two slots of a point-to-point channel. Default 512 KiB. */
  p2pBytes?: number;
  /**
   * All-reduces up to this size reduce everything on every rank in one round; larger ones
   * reduce-scatter then all-gather. Default 64 KiB.
   */
  smallAllReduceBytes?: number;
  /** Wait tuning: synchronous spin, then setImmediate polling, before sleeping. Default: by cores per rank. */
  waitPolicy?: Partial<WaitPolicy>;
}

const OPCODE = { all_reduce: 1, all_gatherv: 2, reduce_scatterv: 3, gather: 4, broadcast: 5 } as const;
const REDUCE_CODE: Record<ReduceOp, number> = { sum: 1, prod: 2, max: 3, min: 4, avg: 5 };

/** Host-tensor communicator over shared memory. */
export class CpuCommunicator extends DeviceCommunicator {
  /** The transport chosen at creation. */
  readonly transport: CpuTransport;
  private readonly channel: CpuChannel;
  private readonly timeoutMs: number;
  private readonly smallBytes: number;
  private tail: Promise<void> = Promise.resolve();
  private readonly sendTails: Promise<void>[];
  private readonly recvTails: Promise<void>[];
  private readonly pending = new Set<number>();
  private readonly sources: ReduceSource[];
  private scratch: Float32Array | null = null;
  private destroying: Promise<void> | null = null;
  private readonly onAbort: () => void;

  private constructor(opts: CpuCommunicatorOptions, segments: Segments, policy: WaitPolicy) {
    super({ rankInGroup: opts.group.rank, worldSize: opts.group.worldSize, device: 'cpu', groupName: opts.groupName });
    this.transport = segments.transport;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.smallBytes = opts.smallAllReduceBytes ?? 64 << 10;
    this.channel = new CpuChannel(segments, this.rankInGroup, this.groupName, this.timeoutMs, this.recorder, policy);
    this.sendTails = new Array<Promise<void>>(this.worldSize).fill(Promise.resolve());
    this.recvTails = new Array<Promise<void>>(this.worldSize).fill(Promise.resolve());
    this.sources = Array.from({ length: this.worldSize }, () => ({
      array: new Uint8Array(0) as StorageArray,
      offset: 0,
    }));
    const signal = opts.abortSignal;
    this.onAbort = () => this.channel.abort(signal?.reason);
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Collective: every rank of `opts.group` must call it. Maps every rank's segment. */
  static async create(opts: CpuCommunicatorOptions): Promise<CpuCommunicator> {
    opts.abortSignal?.throwIfAborted();
    const world = opts.group.worldSize;
    const half = align(Math.max(opts.bufferBytes ?? 1 << 20, 64 * world), 64);
    const p2p = align(Math.max(opts.p2pBytes ?? 512 << 10, 64), 64);
    const segments = await Segments.create({
      group: opts.group,
      groupName: opts.groupName,
      transport: opts.transport,
      halfBytes: half,
      p2pSlotBytes: p2p,
      timeoutMs: opts.timeoutMs ?? 120_000,
    });
    const policy = { ...defaultPolicy(world, segments.sameThread), ...opts.waitPolicy };
    const comm = new CpuCommunicator(opts, segments, policy);
    if (opts.abortSignal?.aborted) comm.onAbort();
    return comm;
  }

  /** Resolves when every operation issued so far has finished; rejects with the communicator's failure. */
  override async synchronize(): Promise<void> {
    await Promise.allSettled([this.tail, ...this.sendTails, ...this.recvTails]);
    this.channel.throwIfFailed();
  }

  /**
   * Rejects pending and later operations (GroupClosedError), then unmaps and unlinks
   * the shared memory. Idempotent.
   */
  override destroy(): Promise<void> {
    this.destroying ??= (async () => {
      this.channel.fail(new GroupClosedError(`the CPU communicator of group '${this.groupName}' was destroyed`));
      await Promise.allSettled([this.tail, ...this.sendTails, ...this.recvTails]);
      await this.channel.segments.close();
    })();
    return this.destroying;
  }

  protected override _allReduce(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> {
    return this.collective('all_reduce', input, null, async (s) => {
      const ch = this.channel;
      const { storage, bytes: is } = dtypeInfo(input.dtype);
      const n = this.worldSize;
      const me = this.rankInGroup;
      const inView = input.hostView();
      const outView = output.hostView();
      const inBytes = bytesOf(inView);
      const outBytes = bytesOf(outView);
      const sig = signature(OPCODE.all_reduce, input.dtype, input.numel, REDUCE_CODE[op]);
      const total = input.numel;
      const step = Math.floor(ch.segments.layout.halfBytes / is);
      const twoPhase = input.nbytes > this.smallBytes;
      const src = this.sources;
      for (let e0 = 0; e0 < total; e0 += step) {
        const count = Math.min(step, total - e0);
        await ch.beginWrite(s);
        const aAt = ch.halfAt;
        ch.mine.bytes.set(inBytes.subarray(e0 * is, (e0 + count) * is), aAt);
        ch.post(sig, s);
        for (let p = 0; p < n; p++) if (p !== me) await ch.awaitPosted(p, sig, s);
        const lo = twoPhase ? Math.floor((me * count) / n) : 0;
        const hi = twoPhase ? Math.floor(((me + 1) * count) / n) : count;
        for (let r = 0; r < n; r++) {
          src[r].array = r === me ? inView : ch.segments.regions[r].view(storage, is);
          src[r].offset = (r === me ? e0 : aAt / is) + lo;
        }
        if (!twoPhase) {
          reduceInto(op, input.dtype, src, outView, e0, count, this.scratchFor(input.dtype, count));
          ch.finish();
          continue;
        }
        // Reduce this rank's slice into the next round's half. Safe without beginWrite:
        // every peer posted this round, so each has finished the round that used that half.
        const bAt = ch.nextHalfAt;
        reduceInto(
          op,
          input.dtype,
          src,
          ch.mine.view(storage, is),
          bAt / is + lo,
          hi - lo,
          this.scratchFor(input.dtype, hi - lo),
        );
        ch.finish();
        ch.post(sig, s);
        for (let p = 0; p < n; p++) {
          const plo = Math.floor((p * count) / n);
          const phi = Math.floor(((p + 1) * count) / n);
          if (p !== me) await ch.awaitPosted(p, sig, s);
          const from = ch.segments.regions[p].bytes;
          outBytes.set(from.subarray(bAt + plo * is, bAt + phi * is), (e0 + plo) * is);
        }
        ch.finish();
      }
    });
  }

  protected override _allGather(input: Tensor, output: Tensor): Promise<void> {
    return this._allGatherv(input, output, new Array<number>(this.worldSize).fill(input.shape[0] ?? 1));
  }

  protected override _allGatherv(input: Tensor, output: Tensor, sizes: readonly number[]): Promise<void> {
    return this.collective('all_gatherv', input, null, async (s) => {
      const ch = this.channel;
      const me = this.rankInGroup;
      const row = rowBytes(output);
      const inBytes = bytesOf(input.hostView());
      const outBytes = bytesOf(output.hostView());
      const offsets = prefix(sizes, row);
      const longest = Math.max(...sizes) * row;
      const half = ch.segments.layout.halfBytes;
      const sig = signature(OPCODE.all_gatherv, input.dtype, row, ...sizes);
      outBytes.set(inBytes, offsets[me]);
      for (let off = 0; off < longest; off += half) {
        const at = ch.halfAt;
        const mine = clamp(sizes[me] * row - off, half);
        if (mine > 0) {
          await ch.beginWrite(s);
          ch.mine.bytes.set(inBytes.subarray(off, off + mine), at);
          ch.post(sig, s);
        }
        for (let p = 0; p < this.worldSize; p++) {
          const len = clamp(sizes[p] * row - off, half);
          if (p === me || len === 0) continue;
          await ch.awaitPosted(p, sig, s);
          outBytes.set(ch.segments.regions[p].bytes.subarray(at, at + len), offsets[p] + off);
        }
        ch.finish();
      }
    });
  }

  protected override _reduceScatter(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> {
    return this._reduceScatterv(input, output, new Array<number>(this.worldSize).fill(output.shape[0] ?? 1), op);
  }

  // Each round carries, per destination w, up to `sub` bytes of w's rows in sub-area w.
  protected override _reduceScatterv(
    input: Tensor,
    output: Tensor,
    sizes: readonly number[],
    op: ReduceOp,
  ): Promise<void> {
    return this.collective('reduce_scatterv', input, null, async (s) => {
      const ch = this.channel;
      const n = this.worldSize;
      const me = this.rankInGroup;
      const { storage, bytes: is } = dtypeInfo(input.dtype);
      const row = rowBytes(input);
      const inView = input.hostView();
      const inBytes = bytesOf(inView);
      const outView = output.hostView();
      const offsets = prefix(sizes, row);
      const sub = Math.floor(ch.segments.layout.halfBytes / n / 8) * 8;
      const longest = Math.max(...sizes) * row;
      const sig = signature(OPCODE.reduce_scatterv, input.dtype, row, REDUCE_CODE[op], ...sizes);
      const src = this.sources;
      for (let off = 0; off < longest; off += sub) {
        const at = ch.halfAt;
        let writes = false;
        for (let w = 0; w < n; w++) if (w !== me && clamp(sizes[w] * row - off, sub) > 0) writes = true;
        if (writes) {
          await ch.beginWrite(s);
          for (let w = 0; w < n; w++) {
            const len = clamp(sizes[w] * row - off, sub);
            if (w !== me && len > 0)
              ch.mine.bytes.set(inBytes.subarray(offsets[w] + off, offsets[w] + off + len), at + w * sub);
          }
          ch.post(sig, s);
        }
        const len = clamp(sizes[me] * row - off, sub);
        if (len > 0) {
          for (let p = 0; p < n; p++) if (p !== me) await ch.awaitPosted(p, sig, s);
          for (let r = 0; r < n; r++) {
            src[r].array = r === me ? inView : ch.segments.regions[r].view(storage, is);
            src[r].offset = r === me ? (offsets[me] + off) / is : (at + me * sub) / is;
          }
          reduceInto(op, input.dtype, src, outView, off / is, len / is, this.scratchFor(input.dtype, len / is));
        }
        ch.finish();
      }
    });
  }

  protected override _gather(input: Tensor, output: Tensor | null, dst: number): Promise<void> {
    return this.collective('gather', input, dst, async (s) => {
      const ch = this.channel;
      const me = this.rankInGroup;
      const inBytes = bytesOf(input.hostView());
      const outBytes = output === null ? null : bytesOf(output.hostView());
      const total = input.nbytes;
      const half = ch.segments.layout.halfBytes;
      const sig = signature(OPCODE.gather, input.dtype, input.numel, dst);
      outBytes?.set(inBytes, me * total);
      for (let off = 0; off < total; off += half) {
        const at = ch.halfAt;
        const len = Math.min(half, total - off);
        if (outBytes === null) {
          await ch.beginWrite(s);
          ch.mine.bytes.set(inBytes.subarray(off, off + len), at);
          ch.post(sig, s);
        } else {
          for (let p = 0; p < this.worldSize; p++) {
            if (p === me) continue;
            await ch.awaitPosted(p, sig, s);
            outBytes.set(ch.segments.regions[p].bytes.subarray(at, at + len), p * total + off);
          }
        }
        ch.finish();
      }
    });
  }

  protected override _broadcast(tensor: Tensor, src: number): Promise<void> {
    return this.collective('broadcast', tensor, src, async (s) => {
      const ch = this.channel;
      const bytes = bytesOf(tensor.hostView());
      const total = tensor.nbytes;
      const half = ch.segments.layout.halfBytes;
      const sig = signature(OPCODE.broadcast, tensor.dtype, tensor.numel, src);
      for (let off = 0; off < total; off += half) {
        const at = ch.halfAt;
        const len = Math.min(half, total - off);
        if (this.rankInGroup === src) {
          await ch.beginWrite(s);
          ch.mine.bytes.set(bytes.subarray(off, off + len), at);
          ch.post(sig, s);
        } else {
          await ch.awaitPosted(src, sig, s);
          bytes.set(ch.segments.regions[src].bytes.subarray(at, at + len), off);
        }
        ch.finish();
      }
    });
  }

  protected override _send(tensor: Tensor, dst: number): Promise<void> {
    return this.pointToPoint('send', this.sendTails, tensor, dst, (s) => this.moveChunks('send', tensor, dst, s));
  }

  protected override _recv(tensor: Tensor, src: number): Promise<void> {
    return this.pointToPoint('recv', this.recvTails, tensor, src, (s) => this.moveChunks('recv', tensor, src, s));
  }

  /** Moves a tensor through the pair's channel in slot-sized chunks (one chunk for an empty tensor). */
  private async moveChunks(direction: 'send' | 'recv', tensor: Tensor, peer: number, s: OpState): Promise<void> {
    const bytes = bytesOf(tensor.hostView());
    const slot = this.channel.segments.layout.p2pSlotBytes;
    const total = bytes.length;
    let off = 0;
    do {
      const len = Math.min(slot, total - off);
      if (direction === 'send') await this.channel.sendChunk(peer, bytes, off, len, total, off === 0, s);
      else await this.channel.recvChunk(peer, bytes, off, len, total, off === 0, s);
      off += len;
    } while (off < total);
  }

  /** Runs `body` after the previous collective. */
  private collective(op: string, t: Tensor, peer: number | null, body: (s: OpState) => Promise<void>): Promise<void> {
    const call = this.takeCall(op, t, peer);
    const run = (): Promise<void> => this.execute(op, t, peer, call, body);
    const result = this.tail.then(run, run);
    this.tail = result.catch(noop);
    return result;
  }

  /** Runs `body` after the previous send to (or recv from) the same peer. */
  private pointToPoint(
    op: string,
    tails: Promise<void>[],
    t: Tensor,
    peer: number,
    body: (s: OpState) => Promise<void>,
  ): Promise<void> {
    const call = this.takeCall(op, t, peer);
    const run = (): Promise<void> => this.execute(op, t, peer, call, body);
    const result = tails[peer].then(run, run);
    tails[peer] = result.catch(noop);
    return result;
  }

  /** The user's call that led to primitive `op` (set by the base class), or one made from the primitive's own arguments. */
  private takeCall(op: string, t: Tensor, peer: number | null): OpCall {
    const call = this.calling ?? {
      op: PRIMITIVE_CALLS[op] ?? 'allReduce',
      dtype: t.dtype,
      shape: t.shape,
      ...(peer === null ? {} : { root: peer }),
    };
    this.calling = null;
    return call;
  }

  private async execute(
    op: string,
    t: Tensor,
    peer: number | null,
    call: OpCall,
    body: (s: OpState) => Promise<void>,
  ): Promise<void> {
    this.channel.throwIfFailed();
    const now = performance.now();
    const seq = this.recorder.start(op, t.dtype, t.numel, peer, now);
    this.pending.add(seq);
    // Its own timeout, or the deadline of the call that issued it when that comes first.
    const deadline = opDeadline(this.timeoutMs, now);
    await body({ op, seq, deadline, timeoutMs: Math.max(0, Math.round(deadline - now)), call });
    // Operations on different queues finish out of order: mark finished only below the oldest pending.
    // A failed operation stays pending in the recorder, as it should in later error messages.
    this.pending.delete(seq);
    let oldest = this.recorder.nextSeq;
    for (const p of this.pending) oldest = Math.min(oldest, p);
    this.recorder.finishThrough(oldest - 1);
  }

  private scratchFor(dtype: string, count: number): Float32Array {
    if (!dtypeInfo(dtype).encoded) return EMPTY_F32;
    if (!this.scratch || this.scratch.length < count)
      this.scratch = new Float32Array(Math.max(count, this.channel.segments.layout.halfBytes / 2));
    return this.scratch;
  }
}

const EMPTY_F32 = new Float32Array(0);

/** The public operation each primitive serves when the base class named none. */
const PRIMITIVE_CALLS: Record<string, UserOp> = {
  all_reduce: 'allReduce',
  all_gatherv: 'allGatherv',
  reduce_scatterv: 'reduceScatterv',
  gather: 'gather',
  broadcast: 'broadcast',
  send: 'send',
  recv: 'recv',
};

function noop(): void {}

/**
 * Default waits. Ranks in one thread can only progress when the waiter yields: no spin.
 * With a core per rank, spin a little and poll longer (lowest latency). With more ranks
 * than cores a spinning or polling rank steals the core its peer needs: sleep early.
 */
function defaultPolicy(world: number, sameThread: boolean): WaitPolicy {
  if (sameThread) return { spinMs: 0, pollMs: 2 };
  if (availableParallelism() > world) return { spinMs: 0.02, pollMs: 0.2 };
  return { spinMs: 0, pollMs: 0 };
}

function bytesOf(v: StorageArray): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function rowBytes(t: Tensor): number {
  let n = t.itemsize;
  for (let i = 1; i < t.shape.length; i++) n *= t.shape[i];
  return n;
}

/** Byte offset of each rank's rows. */
function prefix(sizes: readonly number[], row: number): number[] {
  const out: number[] = [];
  let acc = 0;
  for (const s of sizes) {
    out.push(acc);
    acc += s * row;
  }
  return out;
}

/** `remaining` bytes capped at `cap`, never negative. */
function clamp(remaining: number, cap: number): number {
  return remaining <= 0 ? 0 : Math.min(remaining, cap);
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** A 32-bit hash of an op's arguments: peers compare it to catch mismatched collectives. */
function signature(opcode: number, dtype: string, ...parts: number[]): number {
  let h = Math.imul(0x811c9dc5 ^ opcode, 16777619);
  h = Math.imul(h ^ DTYPES.indexOf(dtype as (typeof DTYPES)[number]), 16777619);
  for (const p of parts) {
    h = Math.imul(h ^ (p % 0x100000000), 16777619);
    h = Math.imul(h ^ Math.floor(p / 0x100000000), 16777619);
  }
  return h | 0;
}
