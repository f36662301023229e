/**
 * How each dtype looks in generated CUDA C: its storage type, the type math runs in,
 * and the expressions that load a stored element into that type and store one back.
 * float16, bfloat16 and the fp8 formats are stored as bits and computed in float; the
 * conversions are defined in {@link PRELUDE} (no NVRTC headers needed), and round the
 * way the host conversions of src/tensor/dtype.ts do: to nearest, ties to even; fp8
 * e4m3fn overflows to NaN and e5m2 to Inf (torch's casts, non-saturating).
 */
import type { DType } from '../tensor/index.ts';

/** What generated code needs to know about one dtype. */
export interface CType {
  /** C type of a stored element. */
  storage: string;
  /** C type arithmetic runs in. */
  compute: string;
  /** C type sums accumulate in. */
  accumulate: string;
  /** Stored element expression → compute value. */
  load(x: string): string;
  /** Compute value → stored element. */
  store(v: string): string;
  /** A floating type (true division, exp, erf are defined on it). */
  float: boolean;
  /** C expression of the smallest value (the identity of max). */
  lowest: string;
}

const plain = (c: string, float: boolean, accumulate: string, lowest: string): CType => ({
  storage: c,
  compute: c,
  accumulate,
  load: (x) => x,
  store: (v) => v,
  float,
  lowest,
});

const encoded = (storage: string, load: string, store: string): CType => ({
  storage,
  compute: 'float',
  accumulate: 'float',
  load: (x) => `${load}(${x})`,
  store: (v) => `${store}(${v})`,
  float: true,
  lowest: 'gg_neg_inf()',
});

const small = (storage: string, accumulate = 'long long'): CType => ({
  storage,
  compute: 'int',
  accumulate,
  load: (x) => `(int)(${x})`,
  store: (v) => `(${storage})(${v})`,
  float: false,
  lowest: '(-2147483647 - 1)',
});

/** The C view of every dtype of the table. */
export const CTYPES: Record<DType, CType> = {
  float32: plain('float', true, 'float', 'gg_neg_inf()'),
  float64: plain('double', true, 'double', '(double)gg_neg_inf()'),
  float16: encoded('unsigned short', 'gg_h2f', 'gg_f2h'),
  bfloat16: encoded('unsigned short', 'gg_bf2f', 'gg_f2bf'),
  float8_e4m3fn: encoded('unsigned char', 'gg_e4m3_to_f', 'gg_f_to_e4m3'),
  float8_e5m2: encoded('unsigned char', 'gg_e5m2_to_f', 'gg_f_to_e5m2'),
  int32: { ...small('int'), lowest: '(-2147483647 - 1)' },
  int64: plain('long long', false, 'long long', '(-9223372036854775807LL - 1)'),
  int8: small('signed char'),
  uint8: small('unsigned char'),
};

/**
 * Conversions between float and the stored bits of the encoded dtypes, and the
 * helpers every generated kernel may use. float16 uses the hardware conversion (PTX
 * `cvt.rn.f16.f32`, round to nearest even); bfloat16 and fp8 round in integer code.
 */
export const PRELUDE = `
__device__ __forceinline__ float gg_neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float gg_nan() { return __int_as_float(0x7fffffff); }
__device__ __forceinline__ float gg_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short gg_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ float gg_bf2f(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short gg_f2bf(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (unsigned short)((u >> 16) | 0x40u);
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
// fp8: |x| >= overflowFrom gives the overflow code (NaN for e4m3fn, Inf for e5m2);
// otherwise round to nearest even at the format's precision (subnormals included).
__device__ __forceinline__ unsigned char gg_f_to_f8(float v, int mant, int bias, float overflowFrom,
                                                     unsigned int overflow, unsigned int nan) {
  if (v != v) return (unsigned char)nan;
  unsigned int u = __float_as_uint(v);
  unsigned int sign = (u >> 24) & 0x80u;
  float a = fabsf(v);
  if (a >= overflowFrom) return (unsigned char)(sign | overflow);
  if (a == 0.0f) return (unsigned char)sign;
  int e = (int)((u >> 23) & 0xffu) - 127;
  if (e < 1 - bias) e = 1 - bias;
  float r = a / ldexpf(1.0f, e - mant);
  float fl = floorf(r);
  float frac = r - fl;
  int n = (int)fl;
  if (frac > 0.5f || (frac == 0.5f && (n & 1))) n++;
  int one = 1 << mant;
  if (n < one) return (unsigned char)(sign | (unsigned int)n);
  int field = e + bias;
  int m = n - one;
  if (n == 2 * one) { field++; m = 0; }
  return (unsigned char)(sign | ((unsigned int)field << mant) | (unsigned int)m);
}
__device__ __forceinline__ unsigned char gg_f_to_e4m3(float v) { return gg_f_to_f8(v, 3, 7, 480.0f, 0x7fu, 0x7fu); }
__device__ __forceinline__ unsigned char gg_f_to_e5m2(float v) { return gg_f_to_f8(v, 2, 15, 61440.0f, 0x7cu, 0x7fu); }
__device__ __forceinline__ float gg_e4m3_to_f(unsigned char b) {
  float s = (b & 0x80) ? -1.0f : 1.0f;
  int field = (b >> 3) & 15, m = b & 7;
  if (field == 15 && m == 7) return gg_nan();
  if (field == 0) return s * ldexpf((float)m, -9);
  return s * ldexpf((float)(8 + m), field - 10);
}
__device__ __forceinline__ float gg_e5m2_to_f(unsigned char b) {
  float s = (b & 0x80) ? -1.0f : 1.0f;
  int field = (b >> 2) & 31, m = b & 3;
  if (field == 31) return m ? gg_nan() : s * __int_as_float(0x7f800000);
  if (field == 0) return s * ldexpf((float)m, -16);
  return s * ldexpf((float)(4 + m), field - 17);
}
`;
