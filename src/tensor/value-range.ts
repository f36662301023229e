/**
 * Which values a dtype can hold, checked before a factory writes them: a value that does
 * not fit is an InvalidArgumentError, never a wrapped or rounded-away number. The rule is
 * torch's `c10::checked_convert` (c10/util/TypeCast.h, `overflows`), which `torch.full`
 * applies to its fill value ("value cannot be converted to type int8_t without
 * overflow"): a finite value outside [lowest, max] overflows; ±Inf fits only a dtype
 * with infinities (not the integers, not float8_e4m3fn); NaN fits only a floating dtype.
 * Stricter than torch on purpose: a fraction is refused by the integer dtypes (torch
 * truncates 1.5 to 1 without a word).
 */
import { InvalidArgumentError } from '../errors.ts';
import { dtypeInfo, type DType } from './dtype.ts';

/** [lowest, max] of the integer dtypes that a JavaScript number holds exactly. */
const intRange: Partial<Record<DType, readonly [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int32: [-(2 ** 31), 2 ** 31 - 1],
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Largest finite value of the floating dtypes narrower than a JavaScript number. */
const floatMax: Partial<Record<DType, number>> = {
  float32: 3.4028234663852886e38,
  bfloat16: 3.3895313892515355e38,
  float16: 65504,
  float8_e5m2: 57344,
  float8_e4m3fn: 448,
};

/** Floating dtypes without infinities: ±Inf overflows them. */
const noInfinity: ReadonlySet<DType> = new Set(['float8_e4m3fn']);

function show(value: unknown): string {
  if (typeof value === 'string') return `string '${value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return String(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/**
 * Why `value` does not fit `dtype`, or null when it does. A bigint fits any dtype whose
 * range holds it (floating dtypes take its nearest number, as torch takes a Python int).
 */
function misfit(dtype: DType, value: unknown): string | null {
  if (typeof value === 'bigint') {
    if (dtype === 'int64') return value < INT64_MIN || value > INT64_MAX ? overflow(dtype, value) : null;
    const range = intRange[dtype];
    if (range && (value < BigInt(range[0]) || value > BigInt(range[1]))) return overflow(dtype, value);
    return range ? null : misfit(dtype, Number(value));
  }
  if (typeof value !== 'number') return `expected a number or a bigint, got ${show(value)}`;
  if (dtype === 'float64') return null;
  const range = intRange[dtype];
  if (range || dtype === 'int64') {
    if (Number.isNaN(value) || !Number.isFinite(value)) return overflow(dtype, value);
    if (!Number.isInteger(value)) return `value ${value} cannot be converted to type ${dtype}: it holds integers only`;
    if (range) return value < range[0] || value > range[1] ? overflow(dtype, value) : null;
    return value < -(2 ** 63) || value >= 2 ** 63 ? overflow(dtype, value) : null;
  }
  if (Number.isNaN(value)) return null;
  if (!Number.isFinite(value)) return noInfinity.has(dtype) ? overflow(dtype, value) : null;
  const max = floatMax[dtype] ?? Number.MAX_VALUE;
  return value > max || value < -max ? overflow(dtype, value) : null;
}

function overflow(dtype: DType, value: number | bigint): string {
  return `value ${show(value)} cannot be converted to type ${dtype} without overflow`;
}

/** Throws InvalidArgumentError(`argument`) unless `dtype` holds `value` (a fill value). */
export function checkScalar(dtype: DType, value: unknown, argument = 'value'): void {
  dtypeInfo(dtype);
  const why = misfit(dtype, value);
  if (why) throw new InvalidArgumentError(argument, why);
}

/**
 * Throws InvalidArgumentError(`argument`) naming the first element of `values` that
 * `dtype` cannot hold. A typed array of the dtype's own storage type (Float32Array for
 * float32, Int8Array for int8...) holds only valid values and is not looked at.
 */
export function checkValues(dtype: DType, values: ArrayLike<unknown>, argument = 'data'): void {
  const info = dtypeInfo(dtype);
  if (!info.encoded && values instanceof info.storage) return;
  if (dtype === 'float64' && values instanceof Float32Array) return;
  // The common case in one comparison per element; anything else takes the full rules.
  // (2 ** 63 - 1024 is the largest double below 2 ** 63.)
  const integral = intRange[dtype] !== undefined || dtype === 'int64';
  const [lo, hi] =
    intRange[dtype] ??
    (dtype === 'int64' ? [-(2 ** 63), 2 ** 63 - 1024] : [-(floatMax[dtype] ?? Infinity), floatMax[dtype] ?? Infinity]);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === 'number' && v >= lo && v <= hi && (!integral || Number.isInteger(v))) continue;
    const why = misfit(dtype, v);
    if (why) throw new InvalidArgumentError(argument, `element ${i}: ${why}`);
  }
}
