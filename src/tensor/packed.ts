/**
 * Several tensors in one allocation: what a tensor dict's small tensors need to travel
 * as one broadcast instead of one each. Each tensor is its own storage over a piece of
 * the block and is disposed on its own; device memory goes back when the last piece
 * (or the whole-buffer view) is disposed. Host pieces are views of one SharedArrayBuffer.
 */
import { dtypeInfo, type DType } from './dtype.ts';
import { DeviceStorage, HostStorage } from './storage.ts';
import { Tensor, parseDevice } from './tensor.ts';

/** Alignment of every piece: what torch's caching allocator gives a tensor (512 B) halves to 256 B, still past any vector load. */
export const PACK_ALIGN_BYTES = 256;

/** Shape and dtype of one packed tensor. */
export interface PackedSpec {
  shape: readonly number[];
  dtype: DType;
}

/** Byte offsets of `specs` in a packed buffer, each aligned, and the buffer's size. */
export function packedLayout(specs: readonly PackedSpec[]): { offsets: number[]; bytes: number[]; totalBytes: number } {
  const offsets: number[] = [];
  const bytes: number[] = [];
  let end = 0;
  for (const s of specs) {
    const offset = Math.ceil(end / PACK_ALIGN_BYTES) * PACK_ALIGN_BYTES;
    const n = s.shape.reduce((a, d) => a * d, 1) * dtypeInfo(s.dtype).bytes;
    offsets.push(offset);
    bytes.push(n);
    end = offset + n;
  }
  return { offsets, bytes, totalBytes: end };
}

/**
 * Uninitialized tensors of `specs` in one allocation on `device`, and a uint8 view of
 * the whole buffer (dispose it once done with it; the tensors keep the memory alive).
 * Every spec must be non-empty. Null on a device while a graph capture allocates.
 */
export function emptyPacked(specs: readonly PackedSpec[], device: string): { buffer: Tensor; tensors: Tensor[]; offsets: number[] } | null {
  const { offsets, bytes, totalBytes } = packedLayout(specs);
  const ordinal = parseDevice(device);
  if (ordinal === null) {
    const whole = HostStorage.allocate(totalBytes);
    return {
      buffer: new Tensor(whole, 'uint8', [totalBytes]),
      tensors: specs.map((s, i) => new Tensor(new HostStorage(whole.buffer, offsets[i], bytes[i]), s.dtype, [...s.shape])),
      offsets,
    };
  }
  const storages = DeviceStorage.carve(ordinal, totalBytes, offsets.map((o, i) => [o, bytes[i]] as const));
  if (!storages) return null;
  const [whole, ...pieces] = storages;
  return {
    buffer: new Tensor(whole, 'uint8', [totalBytes]),
    tensors: specs.map((s, i) => new Tensor(pieces[i], s.dtype, [...s.shape])),
    offsets,
  };
}
