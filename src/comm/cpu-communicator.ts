/**
 * The CPU backend's communicator (the role gloo plays for torch, and what CI runs):
 * every operation moves chunks through shared-memory {@link Mailboxes}, one slot per
 * rank, and reduces on the host in rank order. Operations of one communicator run one
 * at a time, in call order, as NCCL's do on a stream.
 */
import { CollectiveTimeoutError, GroupClosedError, RankFailedError } from '../errors.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { dtypeInfo, type StorageArray, type Tensor } from '../tensor/index.ts';
import { DeviceCommunicator, type ReduceOp } from './device-communicator.ts';
import { Mailboxes, waiter } from './mailbox.ts';
import { reduceInto } from './reduce.ts';

/** Options of {@link CpuCommunicator.create}. */
export interface CpuCommunicatorOptions {
  /** Control plane of the group (rank, world size, store). */
  group: StatelessProcessGroup;
  groupName: string;
  /** Deadline of every operation, in ms. Default 120 000. */
  timeoutMs?: number;
  /** Fired when a peer died: pending and later operations reject. */
  abortSignal?: AbortSignal;
  /** Bytes of each rank's slot; larger tensors go in chunks. Default 4 MiB. */
  slotBytes?: number;
}

/** Host-tensor communicator over shared memory. */
export class CpuCommunicator extends DeviceCommunicator {
  private readonly boxes: Mailboxes;
  private readonly timeoutMs: number;
  private readonly abortSignal?: AbortSignal;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private currentSeq = 0;
  private currentOp = '';

  private constructor(opts: CpuCommunicatorOptions, boxes: Mailboxes) {
    super({ rankInGroup: opts.group.rank, worldSize: opts.group.worldSize, device: 'cpu', groupName: opts.groupName });
    this.boxes = boxes;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.abortSignal = opts.abortSignal;
  }

  /** Collective: every rank of `group` must call it. */
  static async create(opts: CpuCommunicatorOptions): Promise<CpuCommunicator> {
    const boxes = await Mailboxes.create(opts.group, opts.slotBytes ?? 4 << 20);
    return new CpuCommunicator(opts, boxes);
  }

  /** Resolves when every operation issued so far has finished (they run in order). */
  override async synchronize(): Promise<void> {
    await this.tail;
    this.check();
  }

  /** Unmaps the shared memory; later operations fail. Idempotent. */
  override destroy(): void {
    if (this.closed) return;
    this.closed = true;
    // Wait for the operation in flight before unmapping memory it may still read.
    void this.tail.finally(() => this.boxes.close());
  }

  protected override _allReduce(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> {
    return this.run('all_reduce', input, null, async (wait) => {
      const inBytes = bytesOf(input);
      const outBytes = bytesOf(output);
      const all = this.everyone();
      for (const [off, len] of chunks(input.nbytes, this.chunkBytes(input.itemsize))) {
        await this.boxes.slotFree(wait);
        this.boxes.slot(this.rankInGroup).set(inBytes.subarray(off, off + len));
        this.boxes.publish(this.peers());
        const views: StorageArray[] = [];
        for (const r of all) {
          if (r !== this.rankInGroup) await this.boxes.arrived(r, wait);
          views.push(this.view(r, input, len));
        }
        reduceInto(op, input.dtype, views, typed(output, outBytes.subarray(off, off + len)), len / input.itemsize);
        for (const r of this.peers()) this.boxes.release(r);
      }
    });
  }

  protected override _allGather(input: Tensor, output: Tensor): Promise<void> {
    return this._allGatherv(input, output, new Array<number>(this.worldSize).fill(input.shape[0] ?? 1));
  }

  protected override _allGatherv(input: Tensor, output: Tensor, sizes: readonly number[]): Promise<void> {
    return this.run('all_gatherv', input, null, async (wait) => {
      const row = rowBytes(output);
      const inBytes = bytesOf(input);
      const outBytes = bytesOf(output);
      const offsets = prefix(sizes.map((s) => s * row));
      const longest = Math.max(...sizes) * row;
      outBytes.set(inBytes, offsets[this.rankInGroup]);
      for (const [off] of chunks(longest, this.chunkBytes(output.itemsize))) {
        const len = (r: number) => Math.max(0, Math.min(this.chunkBytes(output.itemsize), sizes[r] * row - off));
        await this.boxes.slotFree(wait);
        this.boxes.slot(this.rankInGroup).set(inBytes.subarray(off, off + len(this.rankInGroup)));
        this.boxes.publish(this.peers());
        for (const r of this.peers()) {
          await this.boxes.arrived(r, wait);
          outBytes.set(this.boxes.slot(r).subarray(0, len(r)), offsets[r] + off);
          this.boxes.release(r);
        }
      }
    });
  }

  protected override _reduceScatter(input: Tensor, output: Tensor, op: ReduceOp): Promise<void> {
    return this._reduceScatterv(input, output, new Array<number>(this.worldSize).fill(output.shape[0] ?? 1), op);
  }

  // Each chunk round carries one sub-slot per destination rank: reader w takes sub-slot w.
  protected override _reduceScatterv(input: Tensor, output: Tensor, sizes: readonly number[], op: ReduceOp): Promise<void> {
    return this.run('reduce_scatterv', input, null, async (wait) => {
      const row = rowBytes(input);
      const inBytes = bytesOf(input);
      const outBytes = bytesOf(output);
      const offsets = prefix(sizes.map((s) => s * row));
      const sub = Math.max(input.itemsize, Math.floor(this.boxes.slotBytes / this.worldSize / input.itemsize) * input.itemsize);
      const longest = Math.max(...sizes) * row;
      const me = this.rankInGroup;
      for (const [off] of chunks(longest, sub)) {
        const len = (w: number) => Math.max(0, Math.min(sub, sizes[w] * row - off));
        await this.boxes.slotFree(wait);
        const slot = this.boxes.slot(me);
        for (let w = 0; w < this.worldSize; w++) slot.set(inBytes.subarray(offsets[w] + off, offsets[w] + off + len(w)), w * sub);
        this.boxes.publish(this.peers());
        const n = len(me);
        const views: StorageArray[] = [];
        for (let r = 0; r < this.worldSize; r++) {
          if (r !== me) await this.boxes.arrived(r, wait);
          views.push(this.view(r, input, n, me * sub));
        }
        if (n > 0) reduceInto(op, input.dtype, views, typed(output, outBytes.subarray(off, off + n)), n / input.itemsize);
        for (const r of this.peers()) this.boxes.release(r);
      }
    });
  }

  protected override _gather(input: Tensor, output: Tensor | null, dst: number): Promise<void> {
    return this.run('gather', input, dst, async (wait) => {
      const inBytes = bytesOf(input);
      const step = this.chunkBytes(input.itemsize);
      if (output === null) {
        for (const [off, len] of chunks(input.nbytes, step)) {
          await this.boxes.slotFree(wait);
          this.boxes.slot(this.rankInGroup).set(inBytes.subarray(off, off + len));
          this.boxes.publish([dst]);
        }
        return;
      }
      const outBytes = bytesOf(output);
      outBytes.set(inBytes, this.rankInGroup * input.nbytes);
      for (const [off, len] of chunks(input.nbytes, step)) {
        for (const r of this.peers()) {
          await this.boxes.arrived(r, wait);
          outBytes.set(this.boxes.slot(r).subarray(0, len), r * input.nbytes + off);
          this.boxes.release(r);
        }
      }
    });
  }

  protected override _broadcast(tensor: Tensor, src: number): Promise<void> {
    return this.run('broadcast', tensor, src, async (wait) => {
      const bytes = bytesOf(tensor);
      for (const [off, len] of chunks(tensor.nbytes, this.chunkBytes(tensor.itemsize))) {
        if (this.rankInGroup === src) {
          await this.boxes.slotFree(wait);
          this.boxes.slot(src).set(bytes.subarray(off, off + len));
          this.boxes.publish(this.peers());
        } else {
          await this.boxes.arrived(src, wait);
          bytes.set(this.boxes.slot(src).subarray(0, len), off);
          this.boxes.release(src);
        }
      }
    });
  }

  protected override _send(tensor: Tensor, dst: number): Promise<void> {
    return this.run('send', tensor, dst, async (wait) => {
      const bytes = bytesOf(tensor);
      for (const [off, len] of chunks(tensor.nbytes, this.chunkBytes(tensor.itemsize))) {
        await this.boxes.slotFree(wait);
        this.boxes.slot(this.rankInGroup).set(bytes.subarray(off, off + len));
        this.boxes.publish([dst]);
      }
    });
  }

  protected override _recv(tensor: Tensor, src: number): Promise<void> {
    return this.run('recv', tensor, src, async (wait) => {
      const bytes = bytesOf(tensor);
      for (const [off, len] of chunks(tensor.nbytes, this.chunkBytes(tensor.itemsize))) {
        await this.boxes.arrived(src, wait);
        bytes.set(this.boxes.slot(src).subarray(0, len), off);
        this.boxes.release(src);
      }
    });
  }

  /** Runs `body` after the previous operation, with the flight recorder and a deadline. */
  private run(op: string, t: Tensor, peer: number | null, body: (wait: (done: () => boolean) => Promise<void>) => Promise<void>): Promise<void> {
    const start = async (): Promise<void> => {
      this.check();
      const seq = this.recorder.start(op, t.dtype, t.numel, peer);
      this.currentSeq = seq;
      this.currentOp = op;
      const wait = waiter(this.timeoutMs, () => this.check(), () => new CollectiveTimeoutError(this.groupName, op, seq, this.timeoutMs, this.recorder.recent()));
      await body(wait);
      this.recorder.finishThrough(seq);
    };
    const result = this.tail.then(start, start);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private check(): void {
    if (this.closed) throw new GroupClosedError(`communicator of group '${this.groupName}' was destroyed`);
    if (this.abortSignal?.aborted) {
      const reason = this.abortSignal.reason;
      throw reason instanceof RankFailedError ? reason : new GroupClosedError(`group '${this.groupName}' was aborted during ${this.currentOp} #${this.currentSeq}: ${String(reason)}`);
    }
  }

  private chunkBytes(itemsize: number): number {
    return Math.floor(this.boxes.slotBytes / itemsize) * itemsize;
  }

  private everyone(): number[] {
    return Array.from({ length: this.worldSize }, (_, r) => r);
  }

  private peers(): number[] {
    return this.everyone().filter((r) => r !== this.rankInGroup);
  }

  /** `len` bytes of rank r's slot (at `at`) as the dtype's storage array; own rank: the input itself. */
  private view(r: number, input: Tensor, len: number, at = 0): StorageArray {
    const info = dtypeInfo(input.dtype);
    const { buffer, byteOffset } = this.boxes.slotBuffer(r);
    return new info.storage(buffer, byteOffset + at, len / info.bytes);
  }
}

function bytesOf(t: Tensor): Uint8Array {
  const v = t.hostView();
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function typed(t: Tensor, bytes: Uint8Array): StorageArray {
  return new (dtypeInfo(t.dtype).storage)(bytes.buffer, bytes.byteOffset, bytes.byteLength / t.itemsize);
}

function rowBytes(t: Tensor): number {
  let n = t.itemsize;
  for (let i = 1; i < t.shape.length; i++) n *= t.shape[i];
  return n;
}

function prefix(values: number[]): number[] {
  const out: number[] = [];
  let acc = 0;
  for (const v of values) {
    out.push(acc);
    acc += v;
  }
  return out;
}

/** [offset, length] pairs covering `total` bytes in steps of `step` (one empty pair for 0). */
function chunks(total: number, step: number): [number, number][] {
  if (total === 0) return [[0, 0]];
  const out: [number, number][] = [];
  for (let off = 0; off < total; off += step) out.push([off, Math.min(step, total - off)]);
  return out;
}
