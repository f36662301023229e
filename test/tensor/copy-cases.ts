// Values (typed arrays: fast at tens of MiB) every dtype stores exactly (so a round trip must give them back bit for bit),
// shared by the stand-in-library tests of the copy paths and their GPU twins.
import type { DType } from '../../src/tensor/index.ts';

/** `n` values of `dtype`, varied along the buffer, each exactly representable in it. */
export function exactValues(dtype: DType, n: number): Float64Array | BigInt64Array {
  const at = (i: number): number => {
    switch (dtype) {
      case 'uint8':
        return (i * 7) % 256;
      case 'int8':
        return ((i * 7) % 256) - 128;
      case 'float8_e4m3fn':
        return ((i * 3) % 33) - 16; // integers up to 16 are exact with 3 mantissa bits
      case 'float8_e5m2':
        return ((i * 3) % 17) - 8; // up to 8 with 2 mantissa bits
      case 'bfloat16':
        return ((i * 5) % 512) - 256;
      case 'float16':
        return (((i * 5) % 4096) - 2048) / 2;
      case 'int32':
        return (i * 2654435761) % 2147483647;
      default:
        return i * 0.5 - 1000;
    }
  };
  if (dtype === 'int64') return BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * 3000000007n - 7n);
  return Float64Array.from({ length: n }, (_, i) => at(i));
}
