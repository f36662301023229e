/**
 * Byte copies between contiguous tensors of one device, at any byte offset: what
 * packing into and unpacking out of a uint8 buffer needs. A packed buffer mixes dtypes,
 * so a float32 may start at an odd byte; an element-typed view could not express that,
 * a byte copy can. Host: TypedArray.set; device: one cudaMemcpyAsync on the current
 * stream (no kernels; the same call the tensor layer's copies use).
 */
import { MemcpyKind, cuda } from '../../native/index.ts';
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
  if (!dst.isContiguous || !src.isContiguous)
    throw new InvalidArgumentError('tensor', 'byte copies need contiguous tensors');
  if (dst.device !== src.device)
    throw new InvalidArgumentError('tensor', `byte copy across devices (${src.device} → ${dst.device})`);
  if (srcOffset + bytes > src.nbytes || dstOffset + bytes > dst.nbytes) {
    throw new InvalidArgumentError(
      'bytes',
      `${bytes} bytes overrun a ${src.nbytes}-byte source at ${srcOffset} or a ${dst.nbytes}-byte destination at ${dstOffset}`,
    );
  }
  if (bytes === 0) return;
  if (dst.storage.kind === 'host') {
    hostBytes(dst).set(hostBytes(src).subarray(srcOffset, srcOffset + bytes), dstOffset);
    return;
  }
  cuda().cudaMemcpyAsync(
    dst.dataPtr + BigInt(dstOffset),
    src.dataPtr + BigInt(srcOffset),
    bytes,
    MemcpyKind.DeviceToDevice,
    currentStream().handle,
  );
}
