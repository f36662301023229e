/**
 * Several host tensors in one SharedArrayBuffer: what a tensor dict's small host
 * tensors need to travel as one broadcast instead of one each. Each tensor is a view
 * of its own piece of the buffer.
 */
import { tensorBytes, type DType } from './dtype.ts';
import { HostStorage } from './storage.ts';
import { Tensor } from './tensor.ts';

/** Alignment of every piece: past any typed-array or vector alignment. */
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
    const n = tensorBytes(s.dtype, s.shape);
    offsets.push(offset);
    bytes.push(n);
    end = offset + n;
  }
  return { offsets, bytes, totalBytes: end };
}

/** Host tensors of `specs` over one buffer, and a uint8 tensor of the whole buffer. */
export function emptyPackedHost(specs: readonly PackedSpec[]): {
  buffer: Tensor;
  tensors: Tensor[];
  offsets: number[];
} {
  const { offsets, bytes, totalBytes } = packedLayout(specs);
  const whole = HostStorage.allocate(totalBytes);
  return {
    buffer: new Tensor(whole, 'uint8', [totalBytes]),
    tensors: specs.map(
      (s, i) => new Tensor(new HostStorage(whole.buffer, offsets[i], bytes[i]), s.dtype, [...s.shape]),
    ),
    offsets,
  };
}
