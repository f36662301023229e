/**
 * The packing plan (vllm/distributed/weight_transfer/packed_tensor.py): which tensors go into which packed buffer, at
 * which byte offset. Pure data in, data out, so the producer (from tensors) and the
 * consumer (from names, dtypes and shapes) compute the same boundaries by running
 * the same function, and tests check it without any communicator.
 *
 * vLLM's rule, kept exactly: tensors are appended in order and a buffer closes right
 * after the first tensor that makes its running total strictly greater than the
 * target. That tensor stays in the buffer, so a buffer may exceed the target by up to
 * one tensor and a single huge tensor is a buffer of its own. The tail is a buffer
 * when it holds any tensor; no tensors, no buffers.
 */
import { InvalidArgumentError } from '../errors.ts';
import { tensorBytes, type DType } from '../tensor/index.ts';

/** A tensor as the plan sees it. */
export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

/** Where one tensor sits in its packed buffer. */
export interface PackedSlice extends TensorSpec {
  /** Position in the whole update (0-based). */
  index: number;
  /** Byte offset inside the buffer. */
  offset: number;
  bytes: number;
}

/** One packed buffer: its tensors and total size. */
export interface PackedBufferPlan {
  slices: PackedSlice[];
  bytes: number;
}

/**
 * Splits `specs` (in order) into packed buffers of about `bufferSizeBytes` each, with
 * vLLM's "close after the tensor that crosses the target" rule.
 */
export function planPackedBuffers(specs: Iterable<TensorSpec>, bufferSizeBytes: number): PackedBufferPlan[] {
  if (!Number.isInteger(bufferSizeBytes) || bufferSizeBytes < 1) {
    throw new InvalidArgumentError('packedBufferSizeBytes', `must be a positive integer, got ${bufferSizeBytes}`);
  }
  const plans: PackedBufferPlan[] = [];
  let current: PackedBufferPlan = { slices: [], bytes: 0 };
  let index = 0;
  for (const spec of specs) {
    const bytes = tensorBytes(spec.dtype, spec.shape);
    current.slices.push({
      name: spec.name,
      dtype: spec.dtype,
      shape: spec.shape,
      index: index++,
      offset: current.bytes,
      bytes,
    });
    current.bytes += bytes;
    if (current.bytes > bufferSizeBytes) {
      plans.push(current);
      current = { slices: [], bytes: 0 };
    }
  }
  if (current.slices.length > 0) plans.push(current);
  return plans;
}
