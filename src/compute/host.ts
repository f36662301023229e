/**
 * Reading and writing host tensors as plain values, for the host side of every op:
 * float dtypes as float64 numbers, int64 as bigints. Values written to float16,
 * bfloat16 and fp8 are first rounded to float32 (the device computes those in float32
 * and rounds once more on store, and so does the host).
 */
import { InvalidArgumentError } from '../errors.ts';
import { type DType, Tensor, decodeValues, dtypeInfo, encodeValues } from '../tensor/index.ts';

/** Host values of a tensor: numbers, or bigints for int64. */
export type HostValues = Float64Array | BigInt64Array;

/** The values of host tensor `t` in row-major order. */
export function readHost(t: Tensor): HostValues {
  const c = t.contiguous();
  const view = c.hostView();
  if (view instanceof BigInt64Array) return BigInt64Array.from(view);
  if (dtypeInfo(t.dtype).encoded) return Float64Array.from(decodeValues(t.dtype, view as Uint16Array | Uint8Array));
  return Float64Array.from(view as ArrayLike<number>);
}

/** Numbers as doubles; int64 bigints converted (exact up to 2^53). */
export function asNumbers(v: HostValues): Float64Array {
  return v instanceof BigInt64Array ? Float64Array.from(v, (x) => Number(x)) : v;
}

const INT64_MAX = (1n << 63n) - 1n;

/** A number as an int64, truncated toward zero; NaN → 0, ±Inf and beyond → the nearest bound. */
function toInt64(x: number): bigint {
  if (Number.isNaN(x)) return 0n;
  if (x >= 2 ** 63) return INT64_MAX;
  if (x < -(2 ** 63)) return -INT64_MAX - 1n;
  return BigInt(Math.trunc(x));
}

/** A new host tensor of `shape` and `dtype` holding `values`, rounded or wrapped the way the dtype stores them. */
export function writeHost(shape: readonly number[], dtype: DType, values: HostValues): Tensor {
  const t = Tensor.empty(shape, { dtype });
  const view = t.hostView();
  if (values.length !== t.numel)
    throw new InvalidArgumentError('values', `${values.length} values for ${t.numel} elements`);
  if (view instanceof BigInt64Array) {
    if (values instanceof BigInt64Array) view.set(values);
    else for (let i = 0; i < values.length; i++) view[i] = toInt64(values[i]);
    return t;
  }
  const nums = values instanceof BigInt64Array ? values : null;
  if (dtypeInfo(dtype).encoded) {
    const rounded = Float64Array.from({ length: values.length }, (_, i) =>
      Math.fround(nums ? Number(nums[i]) : (values as Float64Array)[i]),
    );
    encodeValues(dtype, rounded, view as Uint16Array | Uint8Array);
    return t;
  }
  if (nums) {
    // int64 → a narrower type wraps like a C cast; → float goes through the nearest double.
    const integral = !(view instanceof Float32Array || view instanceof Float64Array);
    for (let i = 0; i < nums.length; i++)
      (view as Float64Array)[i] = integral ? Number(BigInt.asIntN(32, nums[i])) : Number(nums[i]);
    return t;
  }
  const target = view as Float32Array;
  const nv = values as Float64Array;
  if (view instanceof Float32Array || view instanceof Float64Array) target.set(nv);
  else for (let i = 0; i < nv.length; i++) target[i] = Math.trunc(nv[i]) || 0; // C truncation; NaN → 0
  return t;
}
