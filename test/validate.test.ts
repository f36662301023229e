import { describe, expect, it } from 'vitest';
import { NcclDataType } from '../native/index.ts';
import { InvalidArgumentError } from '../src/errors.ts';
import { DTYPES, ncclDataType, tensorBytes } from '../src/tensor/index.ts';
import { checkRank, nonNegativeInt, normalizeDim, positiveInt } from '../src/validate.ts';

describe('argument validators (src/validate.ts)', () => {
  it('positiveInt and nonNegativeInt name the argument and show the value', () => {
    expect(positiveInt('worldSize', 4)).toBe(4);
    expect(() => positiveInt('worldSize', 0)).toThrow('worldSize: expected a positive integer, got 0');
    expect(() => positiveInt('worldSize', '4')).toThrow("worldSize: expected an integer, got string '4'");
    expect(nonNegativeInt('nodeRank', 0)).toBe(0);
    expect(() => nonNegativeInt('nodeRank', -1)).toThrow('nodeRank: expected a non-negative integer, got -1');
  });

  it("checkRank and normalizeDim use vLLM's messages", () => {
    expect(() => checkRank('src', 4, 4, 'tp:0')).toThrow("src: Invalid src rank (4) for group 'tp:0' of size 4");
    expect(() => checkRank('dst', 1.5, 4, 'tp:0')).toThrow(InvalidArgumentError);
    expect(() => checkRank('dst', 3, 4, 'tp:0')).not.toThrow();
    expect(normalizeDim(-1, [2, 3])).toBe(1);
    expect(normalizeDim(0, [2, 3])).toBe(0);
    expect(() => normalizeDim(2, [2, 3])).toThrow('dim: Invalid dim (2) for input tensor with shape [2, 3]');
    expect(() => normalizeDim(0, [])).toThrow('dim: Invalid dim (0) for input tensor with shape []');
  });

  it('the dtype table is the one the NCCL layer reads; one byte-size helper', () => {
    const expected: Record<string, number> = {
      float32: NcclDataType.ncclFloat32,
      float16: NcclDataType.ncclFloat16,
      bfloat16: NcclDataType.ncclBfloat16,
      float64: NcclDataType.ncclFloat64,
      int8: NcclDataType.ncclInt8,
      uint8: NcclDataType.ncclUint8,
      int32: NcclDataType.ncclInt32,
      int64: NcclDataType.ncclInt64,
      float8_e4m3fn: NcclDataType.ncclUint8,
      float8_e5m2: NcclDataType.ncclUint8,
    };
    for (const d of DTYPES) expect(ncclDataType(d), d).toBe(expected[d]);
    expect(tensorBytes('bfloat16', [])).toBe(2);
    expect(tensorBytes('int64', [3, 0])).toBe(0);
    expect(tensorBytes('float32', [2, 3])).toBe(24);
  });
});
