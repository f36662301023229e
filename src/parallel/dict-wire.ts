/**
 * How a tensor dict's tensors travel in broadcastTensorDict: the small ones of each
 * kind (device, host) go packed in one buffer, so a dict of many small tensors costs
 * one broadcast per kind instead of one per tensor (on NCCL each grouped broadcast
 * costs microseconds of host time on every rank). Both ends derive the same plan from
 * the metadata. Receivers get their tensors as pieces of the received buffer, each
 * disposed on its own (src/tensor/packed.ts); nothing is copied on their side. The
 * source's copies into its staging buffer are one batched driver call where the driver
 * has it (CUDA 13).
 */
import { Tensor, copyBytes, copyBytesInto, dtypeInfo, emptyPacked, packedLayout, type DType, type PackedSpec } from '../tensor/index.ts';

/** Tensors at most this large travel packed with the dict's other small tensors of their kind. */
export const PACK_TENSOR_MAX_BYTES = 256 << 10;

/** One tensor of a dict as the metadata describes it. */
export interface WireSlot {
  dtype: DType;
  shape: number[];
  onCpu: boolean;
}

/** What goes on the wire, in order, and what to do once it is enqueued. */
export interface Wire {
  /** Over the device communicator. */
  device: Tensor[];
  /** Over the CPU data plane. */
  host: Tensor[];
  /** Frees staging buffers (sender) or the whole-buffer views (receiver); after enqueueing. */
  finish(): void;
}

interface Plan {
  /** Positions in the dict of the packed tensors, per kind (empty when fewer than two qualify). */
  packed: { device: number[]; host: number[] };
  /** Positions of the tensors that travel alone, in dict order. */
  alone: number[];
}

function bytesOf(s: WireSlot): number {
  return s.shape.reduce((a, d) => a * d, 1) * dtypeInfo(s.dtype).bytes;
}

/** The plan both ends compute: empty tensors never travel; small ones pack by kind when two or more qualify. */
export function planWire(slots: readonly WireSlot[]): Plan {
  const small = { device: [] as number[], host: [] as number[] };
  slots.forEach((s, i) => {
    const n = bytesOf(s);
    if (n > 0 && n <= PACK_TENSOR_MAX_BYTES) small[s.onCpu ? 'host' : 'device'].push(i);
  });
  const packed = { device: small.device.length >= 2 ? small.device : [], host: small.host.length >= 2 ? small.host : [] };
  const inPack = new Set([...packed.device, ...packed.host]);
  const alone = slots.map((_, i) => i).filter((i) => !inPack.has(i) && bytesOf(slots[i]) > 0);
  return { packed, alone };
}

const specsOf = (slots: readonly WireSlot[], positions: number[]): PackedSpec[] => positions.map((i) => slots[i]);

/** The source's wire: its small tensors copied into staging buffers (stream-ordered on device), the rest as they are. */
export function senderWire(tensors: readonly Tensor[], slots: readonly WireSlot[]): Wire {
  const plan = planWire(slots);
  const staging: Tensor[] = [];
  const wire: Wire = { device: [], host: [], finish: () => staging.forEach((t) => t.dispose()) };
  for (const kind of ['device', 'host'] as const) {
    const positions = plan.packed[kind];
    if (positions.length === 0) continue;
    const { offsets, totalBytes } = packedLayout(specsOf(slots, positions));
    const buffer = Tensor.empty([totalBytes], { dtype: 'uint8', device: tensors[positions[0]].device });
    const sources = positions.map((p) => tensors[p].contiguous());
    copyBytesInto(buffer, offsets, sources);
    positions.forEach((p, k) => sources[k] !== tensors[p] && sources[k].dispose());
    staging.push(buffer);
    wire[kind].push(buffer);
  }
  for (const p of plan.alone) wire[slots[p].onCpu ? 'host' : 'device'].push(tensors[p]);
  return wire;
}

/**
 * A receiver's tensors for `slots` (device ones on `device`) and its wire: a packed
 * buffer per kind whose pieces are the tensors, then the tensors that travel alone.
 */
export function receiverWire(slots: readonly WireSlot[], device: string): { tensors: Tensor[]; wire: Wire } {
  const plan = planWire(slots);
  const tensors: Tensor[] = new Array(slots.length);
  const views: Tensor[] = [];
  const copies: (() => void)[] = [];
  const wire: Wire = {
    device: [], host: [],
    finish: () => {
      for (const copy of copies) copy();
      for (const v of views) v.dispose();
    },
  };
  for (const kind of ['device', 'host'] as const) {
    const positions = plan.packed[kind];
    if (positions.length === 0) continue;
    const where = kind === 'host' ? 'cpu' : device;
    const specs = specsOf(slots, positions);
    const packed = emptyPacked(specs, where);
    if (packed) {
      positions.forEach((p, k) => (tensors[p] = packed.tensors[k]));
      views.push(packed.buffer);
      wire[kind].push(packed.buffer);
      continue;
    }
    // No shared block while a graph capture allocates: receive the buffer whole and copy
    // each tensor out of it, so the wire stays the one the source sends.
    const { offsets, totalBytes } = packedLayout(specs);
    const buffer = Tensor.empty([totalBytes], { dtype: 'uint8', device: where });
    positions.forEach((p, k) => {
      const t = Tensor.empty(slots[p].shape, { dtype: slots[p].dtype, device: where });
      tensors[p] = t;
      copies.push(() => copyBytes(t, 0, buffer, offsets[k], t.nbytes));
    });
    views.push(buffer);
    wire[kind].push(buffer);
  }
  slots.forEach((s, i) => {
    tensors[i] ??= Tensor.empty(s.shape, { dtype: s.dtype, device: s.onCpu ? 'cpu' : device });
  });
  for (const p of plan.alone) wire[slots[p].onCpu ? 'host' : 'device'].push(tensors[p]);
  return { tensors, wire };
}
