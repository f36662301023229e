/**
 * The one dtype table (torch names ↔ NCCL enum ↔ bytes ↔ host storage) and the host
 * conversions for the dtypes JavaScript has no array for: float16, bfloat16 and the
 * two fp8 formats, all rounding to nearest, ties to even, and keeping NaN a NaN.
 */
import { NcclDataType } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';

/** dtype names, as torch spells them. */
export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int32'
  | 'int64'
  | 'float8_e4m3fn'
  | 'float8_e5m2';

/** Typed arrays that back host storage. */
export type StorageArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int32Array
  | BigInt64Array
  | Uint16Array;
type StorageCtor = {
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): StorageArray;
  new (length: number): StorageArray;
};

/** What the table knows about a dtype. */
export interface DTypeInfo {
  name: DType;
  /** Bytes per element. */
  bytes: number;
  /** ncclDataType_t used to move it (fp8 moves as uint8; reductions refuse fp8). */
  nccl: number;
  /** Host storage array type (raw bits for float16/bfloat16/fp8). */
  storage: StorageCtor;
  /** True when stored as bits that must be converted to and from float32. */
  encoded: boolean;
}

const table: Record<DType, DTypeInfo> = {
  float32: { name: 'float32', bytes: 4, nccl: NcclDataType.ncclFloat32, storage: Float32Array, encoded: false },
  float64: { name: 'float64', bytes: 8, nccl: NcclDataType.ncclFloat64, storage: Float64Array, encoded: false },
  float16: { name: 'float16', bytes: 2, nccl: NcclDataType.ncclFloat16, storage: Uint16Array, encoded: true },
  bfloat16: { name: 'bfloat16', bytes: 2, nccl: NcclDataType.ncclBfloat16, storage: Uint16Array, encoded: true },
  int8: { name: 'int8', bytes: 1, nccl: NcclDataType.ncclInt8, storage: Int8Array, encoded: false },
  uint8: { name: 'uint8', bytes: 1, nccl: NcclDataType.ncclUint8, storage: Uint8Array, encoded: false },
  int32: { name: 'int32', bytes: 4, nccl: NcclDataType.ncclInt32, storage: Int32Array, encoded: false },
  int64: {
    name: 'int64',
    bytes: 8,
    nccl: NcclDataType.ncclInt64,
    storage: BigInt64Array as unknown as StorageCtor,
    encoded: false,
  },
  float8_e4m3fn: { name: 'float8_e4m3fn', bytes: 1, nccl: NcclDataType.ncclUint8, storage: Uint8Array, encoded: true },
  float8_e5m2: { name: 'float8_e5m2', bytes: 1, nccl: NcclDataType.ncclUint8, storage: Uint8Array, encoded: true },
};

/** Every dtype name. */
export const DTYPES = Object.keys(table) as DType[];

/**
 * The ncclDataType_t that moves `dtype` (its table row's `nccl`): fp8 moves as ncclUint8
 * (as vLLM's pynccl.py sends fp8); reductions refuse fp8 before they get here.
 */
export function ncclDataType(dtype: DType): number {
  return table[dtype].nccl;
}

/** Bytes of a contiguous tensor of `dtype` and `shape`: prod(shape) × itemsize (a scalar's shape [] is 1 element). */
export function tensorBytes(dtype: DType, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n * dtypeInfo(dtype).bytes;
}

/** The table row of `dtype`, or an InvalidArgumentError listing the valid names. */
export function dtypeInfo(dtype: string, argument = 'dtype'): DTypeInfo {
  const info = table[dtype as DType];
  if (!info) throw new InvalidArgumentError(argument, `unknown dtype '${dtype}'; valid: ${DTYPES.join(', ')}`);
  return info;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → float16 bits (RNE; overflow → ±Inf; NaN stays NaN). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r++; // a carry into the exponent is right, up to Inf
  return sign | r;
}

/** float16 bits → number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** float32 → bfloat16 bits (RNE; NaN kept quiet). */
export function floatToBfloat16(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits → number. */
export function bfloat16ToFloat(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

interface SmallFloat {
  mantBits: number;
  bias: number;
  /** Largest finite magnitude. */
  max: number;
  /** Code (without sign) for an overflow: Inf for e5m2, NaN for e4m3fn. */
  overflow: number;
  nan: number;
  /** Magnitude from which a value overflows (before rounding). */
  overflowFrom: number;
  hasInf: boolean;
}

// e4m3fn has no infinities: torch maps |x| >= 480 (and ±Inf) to NaN, and rounds
// [448, 480) to 448 — non-saturating, as `tensor.to(torch.float8_e4m3fn)` does.
const E4M3: SmallFloat = {
  mantBits: 3,
  bias: 7,
  max: 448,
  overflow: 0x7f,
  nan: 0x7f,
  overflowFrom: 480,
  hasInf: false,
};
// e5m2 is IEEE-like: rounding past 57344 gives Inf.
const E5M2: SmallFloat = {
  mantBits: 2,
  bias: 15,
  max: 57344,
  overflow: 0x7c,
  nan: 0x7f,
  overflowFrom: 61440,
  hasInf: true,
};

function encodeSmall(value: number, f: SmallFloat): number {
  const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
  const a = Math.abs(value);
  if (Number.isNaN(value)) return sign | f.nan;
  if (a >= f.overflowFrom) return sign | f.overflow;
  if (a === 0) return sign;
  // floor(log2(a)), corrected exactly (Math.log2 may be one ulp off near powers of two).
  let exp = Math.floor(Math.log2(a));
  while (2 ** exp > a) exp--;
  while (2 ** (exp + 1) <= a) exp++;
  exp = Math.max(exp, 1 - f.bias);
  const q = 2 ** (exp - f.mantBits);
  const r = a / q;
  let n = Math.floor(r);
  const frac = r - n;
  if (frac > 0.5 || (frac === 0.5 && (n & 1) === 1)) n++;
  const one = 1 << f.mantBits;
  if (n < one) return sign | n; // subnormal (exp is emin)
  let field = exp + f.bias;
  let mant = n - one;
  if (n === 2 * one) {
    field++;
    mant = 0;
  }
  return sign | (field << f.mantBits) | mant;
}

function decodeSmall(bits: number, f: SmallFloat, expBits: number): number {
  const sign = bits & 0x80 ? -1 : 1;
  const field = (bits >>> f.mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << f.mantBits) - 1);
  const top = (1 << expBits) - 1;
  if (f.hasInf && field === top) return mant ? NaN : sign * Infinity;
  if (!f.hasInf && field === top && mant === (1 << f.mantBits) - 1) return NaN;
  if (field === 0) return sign * mant * 2 ** (1 - f.bias - f.mantBits);
  return sign * ((1 << f.mantBits) + mant) * 2 ** (field - f.bias - f.mantBits);
}

/** float32 → float8_e4m3fn bits. */
export const floatToE4m3 = (v: number): number => encodeSmall(v, E4M3);
/** float8_e4m3fn bits → number. */
export const e4m3ToFloat = (b: number): number => decodeSmall(b, E4M3, 4);
/** float32 → float8_e5m2 bits. */
export const floatToE5m2 = (v: number): number => encodeSmall(v, E5M2);
/** float8_e5m2 bits → number. */
export const e5m2ToFloat = (b: number): number => decodeSmall(b, E5M2, 5);

let halfTable: Float32Array | undefined;
let bf16Table: Float32Array | undefined;
const e4m3Table = Float32Array.from({ length: 256 }, (_, i) => e4m3ToFloat(i));
const e5m2Table = Float32Array.from({ length: 256 }, (_, i) => e5m2ToFloat(i));

/** float32 value of every stored bit pattern of an encoded dtype (a lookup table). */
export function decodeTable(dtype: DType): Float32Array {
  switch (dtype) {
    case 'float16':
      halfTable ??= Float32Array.from({ length: 65536 }, (_, i) => halfToFloat(i));
      return halfTable;
    case 'bfloat16':
      bf16Table ??= Float32Array.from({ length: 65536 }, (_, i) => bfloat16ToFloat(i));
      return bf16Table;
    case 'float8_e4m3fn':
      return e4m3Table;
    default:
      return e5m2Table;
  }
}

const encoders: Partial<Record<DType, (v: number) => number>> = {
  float16: floatToHalf,
  bfloat16: floatToBfloat16,
  float8_e4m3fn: floatToE4m3,
  float8_e5m2: floatToE5m2,
};

/** Decodes stored bits of an encoded dtype into float32 values. */
export function decodeValues(dtype: DType, bits: Uint16Array | Uint8Array): Float32Array {
  const lut = decodeTable(dtype);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = lut[bits[i]];
  return out;
}

/** Encodes numbers into the stored bits of an encoded dtype, writing into `out`. */
export function encodeValues(dtype: DType, values: ArrayLike<number>, out: Uint16Array | Uint8Array): void {
  const enc = encoders[dtype]!;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]);
}
