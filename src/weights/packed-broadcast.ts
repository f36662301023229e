/**
 * Packed broadcast (weight_transfer/packed_tensor.py): the producer copies tensors into uint8 buffers
 * planned by {@link planPackedBuffers} and broadcasts each; the consumer receives each
 * buffer and unpacks it into fresh tensors (copies, independent of the buffer).
 *
 * On a device the buffers travel in segments, pipelined on two streams per side
 * (./segmented.ts). On the CPU backend there are no streams: the producer's
 * `numBuffers` slots rotate, up to that many broadcasts in flight as promises, a slot
 * waiting for its previous one; the consumer issues the next buffer's broadcast before
 * it unpacks the current one (two buffers or more).
 *
 * Both sides skip a buffer of zero bytes (only empty tensors): nothing to move, and
 * vLLM never sends empty tensors either.
 */
import type { DeviceCommunicator } from '../comm/index.ts';
import { Tensor, copyBytes, currentStream, type Stream } from '../tensor/index.ts';
import { planPackedBuffers, type PackedBufferPlan, type TensorSpec } from './packing.ts';
import { consumeSegmented, produceSegmented } from './segmented.ts';

/** What the packed broadcast needs of a communicator. */
export type BroadcastCommunicator = Pick<DeviceCommunicator, 'device' | 'broadcast' | 'synchronize'>;

/** Options shared by producer and consumer. */
export interface PackedBroadcastOptions {
  /** Group rank of the producer. */
  src: number;
  /** Target bytes per buffer; must match on both sides. */
  bufferSizeBytes: number;
  /** Buffers in rotation (overlap only). */
  numBuffers: number;
  /** Device only: the stream the tensors are produced / consumed on. Default: the current stream. */
  stream?: Stream;
  /** Deadline of each wait for a slot, in ms. */
  timeoutMs?: number;
}

/** A batch of unpacked tensors, handed to the consumer's callback once per buffer. */
export type NamedTensors = [string, Tensor][];

/** One buffer slot on the host: the last broadcast's promise. */
class Slot {
  private pending: Promise<unknown> | null = null;

  /** Records the slot's latest broadcast (marked handled now; awaited at the next reuse). */
  use(p: Promise<unknown>): void {
    p.catch(() => {});
    this.pending = p;
  }

  /** Resolves once the slot's earlier broadcast finished; rejects with its error. */
  async idle(): Promise<void> {
    const p = this.pending;
    this.pending = null;
    if (p) await p;
  }
}

/**
 * Runs `step` for each plan on slot k % numBuffers, after that slot's earlier broadcast
 * has finished; then waits for every slot (also after a failure: the first error is
 * rethrown).
 */
async function rotate(
  plans: PackedBufferPlan[],
  numBuffers: number,
  step: (plan: PackedBufferPlan, slot: Slot) => Promise<void> | void,
): Promise<void> {
  const slots = Array.from({ length: numBuffers }, () => new Slot());
  let failure: unknown = null;
  try {
    for (let k = 0; k < plans.length; k++) {
      const slot = slots[k % slots.length];
      await slot.idle();
      await step(plans[k], slot);
    }
  } catch (err) {
    failure = err;
  }
  const results = await Promise.allSettled(slots.map((s) => s.idle()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure === null && failed) failure = failed.reason;
  if (failure !== null) throw failure;
}

/**
 * vLLM's `packed_broadcast_producer`: broadcasts `tensors` (in order) from `opts.src`
 * in packed buffers. Non-contiguous tensors are made contiguous first. Resolves once
 * every buffer has been broadcast (device: completed on its stream). Returns the plan.
 */
export async function packedBroadcastProducer(
  tensors: NamedTensors,
  comm: BroadcastCommunicator,
  opts: PackedBroadcastOptions,
): Promise<PackedBufferPlan[]> {
  const specs: TensorSpec[] = tensors.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const plans = planPackedBuffers(specs, opts.bufferSizeBytes);
  const device = comm.device;
  const user = device === 'cpu' ? null : (opts.stream ?? currentStream());
  if (user) {
    await produceSegmented(plans, tensors, comm, {
      src: opts.src,
      numBuffers: opts.numBuffers,
      user,
      timeoutMs: opts.timeoutMs,
    });
    return plans;
  }
  await rotate(plans, opts.numBuffers, (plan, slot) => {
    if (plan.bytes === 0) return;
    const buffer = Tensor.empty([plan.bytes], { dtype: 'uint8', device });
    for (const s of plan.slices) {
      const t = tensors[s.index][1];
      const c = t.contiguous();
      copyBytes(buffer, s.offset, c, 0, s.bytes);
      if (c !== t) c.dispose();
    }
    slot.use(comm.broadcast(buffer, opts.src));
  });
  return plans;
}

/**
 * vLLM's `packed_broadcast_consumer`: receives the buffers the producer sends for
 * `specs` and calls `onBuffer` once per buffer with fresh tensors (never views of the
 * buffer). On a device the tensors are valid in the order of `opts.stream` (default:
 * the current stream), which waits for the unpacking before `onBuffer` runs.
 */
export async function packedBroadcastConsumer(
  specs: readonly TensorSpec[],
  comm: BroadcastCommunicator,
  opts: PackedBroadcastOptions,
  onBuffer: (batch: NamedTensors) => unknown,
): Promise<PackedBufferPlan[]> {
  const plans = planPackedBuffers(specs, opts.bufferSizeBytes);
  const device = comm.device;
  const user = device === 'cpu' ? null : (opts.stream ?? currentStream());
  if (user) {
    await consumeSegmented(
      plans,
      comm,
      { src: opts.src, numBuffers: opts.numBuffers, user, timeoutMs: opts.timeoutMs },
      onBuffer,
    );
    return plans;
  }
  // With two buffers or more, buffer k+1's broadcast is issued before buffer k is
  // unpacked and handed to onBuffer: that host work overlaps the next transfer.
  const ahead = opts.numBuffers >= 2;
  const issue = (plan: PackedBufferPlan): { plan: PackedBufferPlan; buffer: Tensor; received: Promise<unknown> } => {
    const buffer = Tensor.empty([plan.bytes], { dtype: 'uint8', device });
    const received = plan.bytes > 0 ? comm.broadcast(buffer, opts.src) : Promise.resolve();
    received.catch(() => undefined); // awaited in turn; the first failure is rethrown
    return { plan, buffer, received };
  };
  let next = plans.length > 0 ? issue(plans[0]) : null;
  // After a failure, a broadcast issued ahead is left to finish or fail on its own (handled).
  for (let k = 0; next !== null; k++) {
    const { plan, buffer, received } = next;
    next = null;
    await received;
    if (ahead && k + 1 < plans.length) next = issue(plans[k + 1]);
    const batch: NamedTensors = plan.slices.map((s) => {
      const t = Tensor.empty(s.shape, { dtype: s.dtype, device });
      copyBytes(t, 0, buffer, s.offset, s.bytes);
      return [s.name, t];
    });
    await onBuffer(batch);
    if (!ahead && k + 1 < plans.length) next = issue(plans[k + 1]);
  }
  return plans;
}
