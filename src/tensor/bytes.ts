/**
 * Byte copies between contiguous tensors of one device, at any byte offset: what
 * packing into and unpacking out of a uint8 buffer needs. A packed buffer mixes dtypes,
 * so a float32 may start at an odd byte; an element-typed view could not express that,
 * a byte copy can. Host: TypedArray.set; device: one cudaMemcpyAsync on the current
 * stream (no kernels; the same call the tensor layer's copies use).
 */
import { MemcpyKind, cuda, cudaDriver } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { currentStream } from './stream.ts';
import type { Tensor } from './tensor.ts';

function hostBytes(t: Tensor): Uint8Array {
  const s = t.storage;
  if (s.kind !== 'host') throw new InvalidArgumentError('tensor', `expected a host tensor, got ${t.device}`);
  return new Uint8Array(s.buffer, s.byteOffset + t.offset * t.itemsize, t.nbytes);
}

/**
 * Copies `bytes` bytes from `src` (from byte `srcOffset`) into `dst` (at byte
 * `dstOffset`). Both contiguous, on the same device; device copies are stream-ordered
 * on the current stream.
 */
export function copyBytes(dst: Tensor, dstOffset: number, src: Tensor, srcOffset: number, bytes: number): void {
  if (!dst.isContiguous || !src.isContiguous) throw new InvalidArgumentError('tensor', 'byte copies need contiguous tensors');
  if (dst.device !== src.device) throw new InvalidArgumentError('tensor', `byte copy across devices (${src.device} → ${dst.device})`);
  if (srcOffset + bytes > src.nbytes || dstOffset + bytes > dst.nbytes) {
    throw new InvalidArgumentError('bytes', `${bytes} bytes overrun a ${src.nbytes}-byte source at ${srcOffset} or a ${dst.nbytes}-byte destination at ${dstOffset}`);
  }
  if (bytes === 0) return;
  if (dst.storage.kind === 'host') {
    hostBytes(dst).set(hostBytes(src).subarray(srcOffset, srcOffset + bytes), dstOffset);
    return;
  }
  cuda().cudaMemcpyAsync(dst.dataPtr + BigInt(dstOffset), src.dataPtr + BigInt(srcOffset), bytes, MemcpyKind.DeviceToDevice, currentStream().handle);
}

// One CUmemcpyAttributes for a batch: source read in stream order (CU_MEMCPY_SRC_ACCESS_ORDER_STREAM = 1),
// location hints ignored for device memory, flags 0. Set per device below.
const batchAttrs = new Int32Array(6);
const firstAttr = BigUint64Array.from([0n]);

/**
 * Copies each whole contiguous tensor of `srcs` into `dst` at the byte offset of the
 * same index, stream-ordered on the current stream. On a device with a CUDA 13 driver
 * that is one cuMemcpyBatchAsync call for all of them (one host call instead of one
 * per tensor); elsewhere one copy each.
 */
export function copyBytesInto(dst: Tensor, offsets: readonly number[], srcs: readonly Tensor[]): void {
  const batch = dst.storage.kind === 'device' && srcs.length > 1 ? cudaDriver()?.cuMemcpyBatchAsync_v2 : undefined;
  if (!batch) {
    srcs.forEach((s, i) => copyBytes(dst, offsets[i], s, 0, s.nbytes));
    return;
  }
  const dsts = new BigUint64Array(srcs.length);
  const from = new BigUint64Array(srcs.length);
  const sizes = new BigUint64Array(srcs.length);
  srcs.forEach((s, i) => {
    if (!s.isContiguous || s.device !== dst.device) throw new InvalidArgumentError('tensor', `batched byte copies need contiguous tensors on ${dst.device}`);
    if (offsets[i] + s.nbytes > dst.nbytes) throw new InvalidArgumentError('bytes', `${s.nbytes} bytes at ${offsets[i]} overrun a ${dst.nbytes}-byte destination`);
    dsts[i] = dst.dataPtr + BigInt(offsets[i]);
    from[i] = s.dataPtr;
    sizes[i] = BigInt(s.nbytes);
  });
  const ordinal = (dst.storage as { ordinal: number }).ordinal;
  batchAttrs.set([1, 1, ordinal, 1, ordinal, 0]);
  batch(dsts, from, sizes, srcs.length, batchAttrs, firstAttr, 1, currentStream().handle);
}
