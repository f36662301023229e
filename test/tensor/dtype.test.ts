import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import {
  bfloat16ToFloat,
  dtypeInfo,
  e4m3ToFloat,
  e5m2ToFloat,
  floatToBfloat16,
  floatToE4m3,
  floatToE5m2,
  floatToHalf,
  halfToFloat,
} from '../../src/tensor/index.ts';

describe('float16', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001],
    [2 ** -14, 0x0400],
    [-0, 0x8000],
    [0, 0],
    [2049, 0x6800],
    [2051, 0x6802],
    [65519, 0x7bff],
    [2 ** -25, 0],
    [2 ** -25 * 1.5, 0x0001],
    [0.1, 0x2e66],
  ])('%f → 0x%s', (value, bits) => {
    expect(floatToHalf(value)).toBe(bits);
  });
  it('keeps NaN a NaN', () => {
    expect(floatToHalf(NaN) & 0x7c00).toBe(0x7c00);
    expect(floatToHalf(NaN) & 0x3ff).not.toBe(0);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });
  it('round-trips all 65536 bit patterns (non-NaN)', () => {
    let mismatches = 0;
    for (let i = 0; i < 65536; i++) {
      const f = halfToFloat(i);
      if (!Number.isNaN(f) && floatToHalf(f) !== i) mismatches++;
    }
    expect(mismatches).toBe(0);
  });
});

describe('bfloat16', () => {
  it.each([
    [1, 0x3f80],
    [-1, 0xbf80],
    [Infinity, 0x7f80],
    [1 + 2 ** -8, 0x3f80],
    [1 + 3 * 2 ** -8, 0x3f82],
    [1 + 2 ** -7 + 2 ** -9, 0x3f81],
  ])('%f → 0x%s (RNE)', (value, bits) => {
    expect(floatToBfloat16(value)).toBe(bits);
  });
  it('keeps NaN a quiet NaN', () => {
    expect(bfloat16ToFloat(floatToBfloat16(NaN))).toBeNaN();
    expect(floatToBfloat16(NaN) & 0x40).toBe(0x40);
  });
  it('round-trips all 65536 bit patterns (non-NaN)', () => {
    let mismatches = 0;
    for (let i = 0; i < 65536; i++) {
      const f = bfloat16ToFloat(i);
      if (!Number.isNaN(f) && floatToBfloat16(f) !== i) mismatches++;
    }
    expect(mismatches).toBe(0);
  });
});

describe('fp8', () => {
  it('e4m3fn: max 448, NaN 0x7f, smallest subnormal 2^-9, no infinities (torch: |x| >= 480 → NaN)', () => {
    expect(floatToE4m3(448)).toBe(0x7e);
    expect(floatToE4m3(464)).toBe(0x7e); // tie → even (448)
    expect(floatToE4m3(480)).toBe(0x7f);
    expect(floatToE4m3(Infinity)).toBe(0x7f);
    expect(floatToE4m3(-1000)).toBe(0xff);
    expect(floatToE4m3(2 ** -9)).toBe(0x01);
    expect(floatToE4m3(1)).toBe(0x38);
    expect(e4m3ToFloat(0x7f)).toBeNaN();
    expect(e4m3ToFloat(0x7e)).toBe(448);
    expect(e4m3ToFloat(0x01)).toBe(2 ** -9);
  });
  it('e5m2: max 57344, Inf 0x7c, NaN', () => {
    expect(floatToE5m2(57344)).toBe(0x7b);
    expect(floatToE5m2(Infinity)).toBe(0x7c);
    expect(floatToE5m2(1e6)).toBe(0x7c);
    expect(floatToE5m2(-Infinity)).toBe(0xfc);
    expect(e5m2ToFloat(0x7c)).toBe(Infinity);
    expect(e5m2ToFloat(0x7e)).toBeNaN();
    expect(floatToE5m2(1)).toBe(0x3c);
  });
  it('round-trip all 256 patterns of both formats (non-NaN)', () => {
    for (let i = 0; i < 256; i++) {
      const a = e4m3ToFloat(i);
      if (!Number.isNaN(a)) expect(floatToE4m3(a)).toBe(i);
      const b = e5m2ToFloat(i);
      if (!Number.isNaN(b)) expect(floatToE5m2(b)).toBe(i);
    }
  });
});

describe('dtype table', () => {
  it('knows sizes and NCCL types, and names the argument for an unknown dtype', () => {
    expect(dtypeInfo('bfloat16').bytes).toBe(2);
    expect(dtypeInfo('int64').nccl).toBe(4);
    expect(dtypeInfo('float8_e4m3fn').nccl).toBe(1);
    expect(() => dtypeInfo('float128')).toThrow(InvalidArgumentError);
    expect(() => dtypeInfo('float128')).toThrow(/dtype: unknown dtype 'float128'; valid: float32/);
  });
});
