/**
 * The packed broadcast on a device, pipelined below the buffer: each packed buffer
 * (the plan of ./packing.ts, unchanged) travels as segments of SEGMENT_BYTES, and a
 * segment is broadcast as soon as it is packed (producer) or unpacked as soon as it
 * has arrived (consumer). Packing takes about a quarter of a broadcast's time (H200:
 * 0.9 ms per GiB against 2.9 ms), so with whole buffers the first pack and the last
 * unpack could not overlap anything; with segments only one segment's worth is exposed.
 *
 * Two streams per side, no host waits until the end: the producer packs on a copy
 * stream and broadcasts on a send stream that waits for each segment's packing; the
 * consumer receives on a receive stream and unpacks on an unpack stream that waits for
 * each segment. `numBuffers` buffers rotate: a buffer's memory is reused only after its
 * last broadcast (producer) or its last unpack (consumer), which the stream that
 * reuses it waits for on the GPU. Both sides cut the same segments from the same plan.
 */
import type { DeviceCommunicator } from '../comm/index.ts';
import { CudaEvent, Stream, Tensor, copyBytes, enqueueOn } from '../tensor/index.ts';
import type { PackedBufferPlan, PackedSlice } from './packing.ts';

/** Bytes per broadcast inside a packed buffer (NCCL reaches ~96% of its 1 GiB busbw at this size on H200). */
export const SEGMENT_BYTES = 256 * 2 ** 20;

type Comm = Pick<DeviceCommunicator, 'device' | 'broadcast' | 'synchronize'>;

/** A buffer in flight and the event after its last use on the stream that used it last. */
interface InFlight {
  buffer: Tensor;
  done: CudaEvent;
}

/** @internal [start, end) byte ranges of `bytes` in segments of `size` (both sides cut the same). */
export function segments(bytes: number, size = SEGMENT_BYTES): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < bytes; a += size) out.push([a, Math.min(bytes, a + size)]);
  return out;
}

/** @internal The part of `slice` inside the buffer range [a, b), as offsets into the buffer and into the tensor. */
export function overlap(
  slice: PackedSlice,
  a: number,
  b: number,
): { at: number; within: number; bytes: number } | null {
  const start = Math.max(a, slice.offset);
  const end = Math.min(b, slice.offset + slice.bytes);
  return end > start ? { at: start, within: start - slice.offset, bytes: end - start } : null;
}

/**
 * Reuses the oldest buffer slot once `numBuffers` are in flight: `stream` waits (on the
 * GPU) for the slot's last use, then frees its buffer in its own order.
 */
function recycle(inFlight: InFlight[], numBuffers: number, stream: Stream): void {
  while (inFlight.length >= numBuffers) {
    const old = inFlight.shift()!;
    stream.waitEvent(old.done);
    enqueueOn(stream, () => old.buffer.dispose());
    old.done.dispose();
  }
}

/**
 * Waits for both streams (each within the deadline), then frees the buffers left and
 * the streams, also after a failure; rethrows the first error.
 */
async function finish(
  comm: Comm,
  streams: Stream[],
  inFlight: InFlight[],
  timeoutMs: number | undefined,
  failure: unknown,
): Promise<void> {
  for (const s of streams) {
    try {
      await enqueueOn(s, () => comm.synchronize(timeoutMs));
    } catch (err) {
      failure ??= err;
    }
  }
  for (const f of inFlight) {
    enqueueOn(streams[0], () => f.buffer.dispose());
    f.done.dispose();
  }
  for (const s of streams) s.dispose();
  if (failure !== undefined) throw failure;
}

/** Producer side: packs `tensors` per `plans` and broadcasts them from `src`; resolves once all is sent. */
export async function produceSegmented(
  plans: PackedBufferPlan[],
  tensors: [string, Tensor][],
  comm: Comm,
  opts: { src: number; numBuffers: number; user: Stream; timeoutMs?: number },
): Promise<void> {
  const copy = new Stream();
  const send = new Stream();
  const inFlight: InFlight[] = [];
  let failure: unknown;
  try {
    // The tensors were written on the user's stream: packing reads them after that.
    copy.waitStream(opts.user);
    for (const plan of plans) {
      if (plan.bytes === 0) continue;
      recycle(inFlight, opts.numBuffers, copy);
      const buffer = enqueueOn(copy, () => Tensor.empty([plan.bytes], { dtype: 'uint8', device: comm.device }));
      for (const [a, b] of segments(plan.bytes)) {
        enqueueOn(copy, () => {
          for (const s of plan.slices) {
            const part = overlap(s, a, b);
            if (!part) continue;
            const t = tensors[s.index][1];
            const c = t.contiguous();
            copyBytes(buffer, part.at, c, part.within, part.bytes);
            if (c !== t) c.dispose();
          }
        });
        send.waitStream(copy);
        await enqueueOn(send, () => comm.broadcast(buffer.narrow(0, a, b - a), opts.src));
      }
      inFlight.push({ buffer, done: new CudaEvent().record(send) });
    }
  } catch (err) {
    failure = err;
  }
  await finish(comm, [send, copy], inFlight, opts.timeoutMs, failure);
}

/** A buffer whose receives are enqueued: each segment with the event after its receive. */
interface Incoming {
  plan: PackedBufferPlan;
  buffer: Tensor;
  arrived: [number, number, CudaEvent][];
}

/**
 * Consumer side: receives the buffers for `plans` and calls `onBuffer` once per buffer
 * with fresh tensors, valid in the order of `opts.user` (which waits for the unpacking).
 * With two buffers or more, the receives of buffer k+1 are enqueued before buffer k is
 * unpacked: unpacking costs host time per tensor (an allocation and a copy, then the
 * caller's own work), which then overlaps the next transfer instead of delaying it.
 */
export async function consumeSegmented(
  plans: PackedBufferPlan[],
  comm: Comm,
  opts: { src: number; numBuffers: number; user: Stream; timeoutMs?: number },
  onBuffer: (batch: [string, Tensor][]) => unknown,
): Promise<void> {
  const recv = new Stream();
  const unpack = new Stream();
  const inFlight: InFlight[] = [];
  const ahead = opts.numBuffers >= 2;
  const issue = async (plan: PackedBufferPlan, holding: number): Promise<Incoming> => {
    // `holding` buffers are received but not yet unpacked: they count against numBuffers.
    recycle(inFlight, opts.numBuffers - holding, recv);
    const buffer = enqueueOn(recv, () => Tensor.empty([plan.bytes], { dtype: 'uint8', device: comm.device }));
    const arrived: Incoming['arrived'] = [];
    for (const [a, b] of segments(plan.bytes)) {
      await enqueueOn(recv, () => comm.broadcast(buffer.narrow(0, a, b - a), opts.src));
      arrived.push([a, b, new CudaEvent().record(recv)]);
    }
    return { plan, buffer, arrived };
  };
  let failure: unknown;
  const queue: Incoming[] = []; // received (or being received), not yet unpacked
  let unpacking: Incoming | null = null;
  try {
    for (let k = 0; k < plans.length; k++) {
      if (queue.length === 0) queue.push(await issue(plans[k], 0));
      if (ahead && k + 1 < plans.length) queue.push(await issue(plans[k + 1], 1));
      unpacking = queue.shift()!;
      const { plan, buffer, arrived } = unpacking;
      const outputs = enqueueOn(unpack, () =>
        plan.slices.map((s) => Tensor.empty(s.shape, { dtype: s.dtype, device: comm.device })),
      );
      for (const [a, b, ev] of arrived) {
        unpack.waitEvent(ev);
        enqueueOn(unpack, () => {
          plan.slices.forEach((s, i) => {
            const part = overlap(s, a, b);
            if (part) copyBytes(outputs[i], part.within, buffer, part.at, part.bytes);
          });
        });
      }
      settle(unpacking, unpack, inFlight);
      unpacking = null;
      opts.user.waitStream(unpack);
      await onBuffer(plan.slices.map((s, i) => [s.name, outputs[i]]));
    }
  } catch (err) {
    failure = err;
  }
  // After a failure, what was received but not unpacked is freed with the rest.
  for (const left of [...(unpacking ? [unpacking] : []), ...queue]) settle(left, recv, inFlight);
  await finish(comm, [unpack, recv], inFlight, opts.timeoutMs, failure);
}

/** Hands an incoming buffer to the rotation once `stream` (the last to use it) is done with it. */
function settle(incoming: Incoming, stream: Stream, inFlight: InFlight[]): void {
  for (const [, , ev] of incoming.arrived) ev.dispose();
  incoming.arrived = [];
  inFlight.push({ buffer: incoming.buffer, done: new CudaEvent().record(stream) });
}
