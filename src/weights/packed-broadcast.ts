/**
 * Packed broadcast (vllm-spec §11.3): the producer copies tensors into uint8 buffers
 * planned by {@link planPackedBuffers} and broadcasts each; the consumer receives each
 * buffer and unpacks it into fresh tensors (copies, independent of the buffer).
 *
 * `numBuffers` slots rotate. On a device each slot has its own stream: buffer k is
 * packed and broadcast on slot k % n, so packing buffer k+1 (copies on another stream)
 * overlaps broadcasting buffer k; before a slot is reused, its earlier broadcast must
 * have finished (vLLM synchronizes the slot's stream; we poll it without blocking the
 * event loop). On the CPU backend there are no streams: up to n broadcasts are in
 * flight as promises and a slot waits for its previous one.
 *
 * Both sides skip a buffer of zero bytes (only empty tensors): nothing to move, and
 * vllm-spec §14 item 6 says empty tensors are never sent.
 */
import type { DeviceCommunicator } from '../comm/index.ts';
import { Stream, Tensor, currentStream, enqueueOn } from '../tensor/index.ts';
import { copyBytes } from './bytes.ts';

import { planPackedBuffers, type PackedBufferPlan, type TensorSpec } from './packing.ts';

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

/** One buffer slot: a stream on a device, the last broadcast's promise everywhere. */
class Slot {
  private pending: Promise<unknown> | null = null;
  constructor(readonly stream: Stream | null) {}

  /** Records the slot's latest broadcast (marked handled now; awaited at the next reuse). */
  use(p: Promise<unknown>): void {
    p.catch(() => {});
    this.pending = p;
  }

  /** Resolves once the slot's earlier work finished; rejects with the communicator's error. */
  async idle(comm: BroadcastCommunicator, timeoutMs?: number): Promise<void> {
    const p = this.pending;
    this.pending = null;
    if (p) await p;
    if (this.stream) await enqueueOn(this.stream, () => comm.synchronize(timeoutMs));
  }
}

function makeSlots(device: string, n: number): Slot[] {
  return Array.from({ length: n }, () => new Slot(device === 'cpu' ? null : new Stream()));
}

/** Waits for every slot, then releases their streams (also after a failure). */
async function drain(slots: Slot[], comm: BroadcastCommunicator, timeoutMs?: number): Promise<void> {
  try {
    const results = await Promise.allSettled(slots.map((s) => s.idle(comm, timeoutMs)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    for (const s of slots) s.stream?.dispose();
  }
}

/**
 * Runs `step` for each plan on slot k % numBuffers, after that slot's earlier work has
 * finished; then waits for every slot and releases their streams, also after a failure
 * (the first error is rethrown).
 */
async function rotate(plans: PackedBufferPlan[], comm: BroadcastCommunicator, opts: PackedBroadcastOptions, step: (plan: PackedBufferPlan, slot: Slot) => Promise<void> | void): Promise<void> {
  const slots = makeSlots(comm.device, opts.numBuffers);
  let failure: unknown = null;
  try {
    for (let k = 0; k < plans.length; k++) {
      const slot = slots[k % slots.length];
      await slot.idle(comm, opts.timeoutMs);
      await step(plans[k], slot);
    }
  } catch (err) {
    failure = err;
  }
  try {
    await drain(slots, comm, opts.timeoutMs);
  } catch (err) {
    failure ??= err;
  }
  if (failure !== null) throw failure;
}

/**
 * vLLM's `packed_broadcast_producer`: broadcasts `tensors` (in order) from `opts.src`
 * in packed buffers. Non-contiguous tensors are made contiguous first. Resolves once
 * every buffer has been broadcast (device: completed on its stream). Returns the plan.
 */
export async function packedBroadcastProducer(tensors: NamedTensors, comm: BroadcastCommunicator, opts: PackedBroadcastOptions): Promise<PackedBufferPlan[]> {
  const specs: TensorSpec[] = tensors.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const plans = planPackedBuffers(specs, opts.bufferSizeBytes);
  const device = comm.device;
  const user = device === 'cpu' ? null : (opts.stream ?? currentStream());
  await rotate(plans, comm, opts, (plan, slot) => {
    if (plan.bytes === 0) return;
    const sent = enqueueOn(slot.stream, () => {
      // The tensors were written on the user's stream: the slot reads them after that.
      if (slot.stream && user) slot.stream.waitStream(user);
      const buffer = Tensor.empty([plan.bytes], { dtype: 'uint8', device });
      for (const s of plan.slices) {
        const t = tensors[s.index][1];
        const c = t.contiguous();
        copyBytes(buffer, s.offset, c, 0, s.bytes);
        if (c !== t) c.dispose();
      }
      const p = comm.broadcast(buffer, opts.src);
      // Stream-ordered free: after the broadcast on the slot's stream (no-op on the host).
      buffer.dispose();
      return p;
    });
    slot.use(sent);
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
  await rotate(plans, comm, opts, async (plan, slot) => {
    const { buffer, received } = enqueueOn(slot.stream, () => {
      const b = Tensor.empty([plan.bytes], { dtype: 'uint8', device });
      return { buffer: b, received: plan.bytes > 0 ? comm.broadcast(b, opts.src) : Promise.resolve(b) };
    });
    // Device: resolves once enqueued; host: once the bytes are here.
    await received;
    const batch = enqueueOn(slot.stream, () => {
      const out: NamedTensors = plan.slices.map((s) => {
        const t = Tensor.empty(s.shape, { dtype: s.dtype, device });
        copyBytes(t, 0, buffer, s.offset, s.bytes);
        return [s.name, t];
      });
      buffer.dispose();
      return out;
    });
    if (slot.stream && user) user.waitStream(slot.stream);
    await onBuffer(batch);
  });
  return plans;
}
