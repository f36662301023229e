/**
 * How a tensor dict's tensors travel in broadcastTensorDict. Small host tensors (the
 * CPU backend's, and CPU tensors of a dict on NCCL) go packed in one buffer: one
 * broadcast over the CPU data plane instead of one round per tensor, for a few
 * memcpys on each side. Device tensors go one broadcast each, in one NCCL group:
 * packing them would cost the source one device copy per tensor, and on an H200 host a
 * 4 KiB cudaMemcpyAsync costs ~5 µs of host time, batched (cuMemcpyBatchAsync) ~4.7 µs
 * a copy (docs/results/h1-s4-copies.jsonl), more than the grouped broadcast it saves.
 * Both ends derive the same plan from the metadata.
 */
import {
  Tensor,
  copyBytes,
  emptyPackedHost,
  packedLayout,
  tensorBytes,
  type DType,
  type PackedSpec,
} from '../tensor/index.ts';

/** Host tensors at most this large travel packed with the dict's other small host tensors. */
export const PACK_TENSOR_MAX_BYTES = 256 << 10;

/** One tensor of a dict as the metadata describes it. */
export interface WireSlot {
  dtype: DType;
  shape: number[];
  onCpu: boolean;
}

/** What goes on the wire, in order. */
export interface Wire {
  /** Over the device communicator. */
  device: Tensor[];
  /** Over the CPU data plane. */
  host: Tensor[];
  /** Run once the wire's broadcasts are enqueued: the source frees its contiguous copies. */
  finish(): void;
}

interface Plan {
  /** Positions of the packed host tensors (empty when fewer than two qualify). */
  packed: number[];
  /** Positions of the tensors that travel alone, in dict order. */
  alone: number[];
}

/** The plan both ends compute: empty tensors never travel; small host ones pack when two or more qualify. */
export function planWire(slots: readonly WireSlot[]): Plan {
  const small: number[] = [];
  const others: number[] = [];
  slots.forEach((s, i) => {
    const n = tensorBytes(s.dtype, s.shape);
    if (n > 0) (s.onCpu && n <= PACK_TENSOR_MAX_BYTES ? small : others).push(i);
  });
  if (small.length < 2) return { packed: [], alone: [...small, ...others].sort((a, b) => a - b) };
  return { packed: small, alone: others };
}

const specsOf = (slots: readonly WireSlot[], positions: number[]): PackedSpec[] => positions.map((i) => slots[i]);
const noop = (): void => undefined;
const disposeAll = (tensors: readonly Tensor[]): void => {
  for (const t of tensors) t.dispose();
};

/**
 * The source's wire: its small host tensors copied into one buffer, the rest as they
 * are, or as contiguous copies of the non-contiguous ones (freed by finish(), stream
 * ordered after the broadcasts that read them).
 */
export function senderWire(tensors: readonly Tensor[], slots: readonly WireSlot[]): Wire {
  const plan = planWire(slots);
  const copies: Tensor[] = [];
  const wire: Wire = { device: [], host: [], finish: () => disposeAll(copies) };
  if (plan.packed.length > 0) {
    const { offsets, totalBytes } = packedLayout(specsOf(slots, plan.packed));
    const buffer = Tensor.empty([totalBytes], { dtype: 'uint8' });
    for (const [k, p] of plan.packed.entries())
      copyBytes(buffer, offsets[k], tensors[p].contiguous(), 0, tensors[p].nbytes);
    wire.host.push(buffer);
  }
  for (const p of plan.alone) {
    const t = tensors[p].contiguous();
    if (t !== tensors[p]) copies.push(t);
    wire[slots[p].onCpu ? 'host' : 'device'].push(t);
  }
  return wire;
}

/**
 * A receiver's tensors for `slots` (device ones on `device`) and its wire: the packed
 * host buffer, whose pieces are the small host tensors, then the tensors that travel alone.
 */
export function receiverWire(slots: readonly WireSlot[], device: string): { tensors: Tensor[]; wire: Wire } {
  const plan = planWire(slots);
  const tensors: Tensor[] = new Array(slots.length);
  const wire: Wire = { device: [], host: [], finish: noop };
  if (plan.packed.length > 0) {
    const packed = emptyPackedHost(specsOf(slots, plan.packed));
    for (const [k, p] of plan.packed.entries()) tensors[p] = packed.tensors[k];
    wire.host.push(packed.buffer);
  }
  slots.forEach((s, i) => {
    tensors[i] ??= Tensor.empty(s.shape, { dtype: s.dtype, device: s.onCpu ? 'cpu' : device });
  });
  for (const p of plan.alone) wire[slots[p].onCpu ? 'host' : 'device'].push(tensors[p]);
  return { tensors, wire };
}
