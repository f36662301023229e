// The factories refuse what a dtype cannot hold and take torch's arange forms.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { Tensor } from '../../src/tensor/index.ts';

const values = async (t: Tensor) => Array.from((await t.toArray()) as ArrayLike<number | bigint>);

describe('Tensor.arange', () => {
  it('takes arange(end, opts), arange(start, end, opts) and arange(start, end, step, opts)', async () => {
    const a = Tensor.arange(8, { dtype: 'int8' });
    expect(a.dtype).toBe('int8');
    expect(a.shape).toEqual([8]);
    expect(await values(a)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const b = Tensor.arange(2, 6, { dtype: 'float32' });
    expect(b.dtype).toBe('float32');
    expect(await values(b)).toEqual([2, 3, 4, 5]);
    const c = Tensor.arange(10, 0, -3, { dtype: 'int32' });
    expect(await values(c)).toEqual([10, 7, 4, 1]);
    expect(await values(Tensor.arange(0, 1, 0.25, { dtype: 'float16' }))).toEqual([0, 0.25, 0.5, 0.75]);
    expect(Tensor.arange(3, 3).shape).toEqual([0]);
  });

  it("defaults to torch's dtypes: int64 for integer bounds and step, float32 otherwise", async () => {
    expect(Tensor.arange(4).dtype).toBe('int64');
    expect(await values(Tensor.arange(4))).toEqual([0n, 1n, 2n, 3n]);
    expect(Tensor.arange(1, 4).dtype).toBe('int64');
    expect(Tensor.arange(1, 4, 2).dtype).toBe('int64');
    expect(Tensor.arange(0.5, 2).dtype).toBe('float32');
    expect(await values(Tensor.arange(1, 2, 0.25))).toEqual([1, 1.25, 1.5, 1.75]);
  });

  it.each([
    [() => Tensor.arange(Number.NaN), /^end: expected a finite number, got NaN/],
    [() => Tensor.arange(0, Number.POSITIVE_INFINITY), /^end: expected a finite number, got Infinity/],
    [() => Tensor.arange('8' as unknown as number), /^end: expected a finite number, got string/],
    [() => Tensor.arange(8n as unknown as number), /^end: expected a finite number, got bigint/],
    [() => Tensor.arange(0, 4, Number.NaN), /^step: expected a finite number, got NaN/],
    [() => Tensor.arange(0, 4, 0), /^step: must be non-zero/],
    [() => Tensor.arange(4, 0, 1), /^step: 1 points away from end 0 \(start 4\)/],
    [() => Tensor.arange(24, undefined as unknown as number, 1, {}), /^end: expected a finite number, got undefined/],
    [() => (Tensor.arange as (...a: unknown[]) => Tensor)(), /^arange: expected arange\(end\)/],
    [() => Tensor.arange(0, 1, 0.5, { dtype: 'int32' }), /^dtype: int32 holds integers only/],
    [() => Tensor.arange(200, { dtype: 'int8' }), /^end: value 199 cannot be converted to type int8 without overflow/],
    [() => Tensor.arange(-1, 2, { dtype: 'uint8' }), /^start: value -1 cannot be converted to type uint8/],
  ])('refuses a bad argument, naming it (%#)', (make, message) => {
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });
});

describe('Tensor.full and fromArray refuse values the dtype cannot hold', () => {
  it.each([
    [1000, 'int8', /^value: value 1000 cannot be converted to type int8 without overflow/],
    [-1, 'uint8', /uint8 without overflow/],
    [2 ** 31, 'int32', /int32 without overflow/],
    [1.5, 'int32', /^value: value 1.5 cannot be converted to type int32: it holds integers only/],
    [Number.NaN, 'int64', /value NaN cannot be converted to type int64 without overflow/],
    [Number.POSITIVE_INFINITY, 'int8', /value Infinity cannot be converted to type int8/],
    [2 ** 63, 'int64', /int64 without overflow/],
    [2n ** 63n, 'int64', /value 9223372036854775808n cannot be converted to type int64 without overflow/],
    [300n, 'uint8', /value 300n cannot be converted to type uint8/],
    [1e6, 'float16', /value 1000000 cannot be converted to type float16 without overflow/],
    [1e39, 'float32', /float32 without overflow/],
    [1e39, 'bfloat16', /bfloat16 without overflow/],
    [500, 'float8_e4m3fn', /float8_e4m3fn without overflow/],
    [Number.POSITIVE_INFINITY, 'float8_e4m3fn', /value Infinity cannot be converted to type float8_e4m3fn/],
    [60000, 'float8_e5m2', /float8_e5m2 without overflow/],
    ['3', 'float32', /^value: expected a number or a bigint, got string '3'/],
  ] as const)('full([4], value %#) throws', (value, dtype, message) => {
    const make = () => Tensor.full([4], value as number, { dtype });
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });

  it('keeps every value a dtype holds, its limits, ±Inf where it has infinities and NaN in floats', async () => {
    expect(await values(Tensor.full([2], 127, { dtype: 'int8' }))).toEqual([127, 127]);
    expect(await values(Tensor.full([1], -128, { dtype: 'int8' }))).toEqual([-128]);
    expect(await values(Tensor.full([1], 255, { dtype: 'uint8' }))).toEqual([255]);
    expect(await values(Tensor.full([1], 2n ** 63n - 1n, { dtype: 'int64' }))).toEqual([2n ** 63n - 1n]);
    expect(await values(Tensor.full([1], 65504, { dtype: 'float16' }))).toEqual([65504]);
    expect(await values(Tensor.full([1], Number.NEGATIVE_INFINITY, { dtype: 'float16' }))).toEqual([
      Number.NEGATIVE_INFINITY,
    ]);
    expect(await values(Tensor.full([1], 448, { dtype: 'float8_e4m3fn' }))).toEqual([448]);
    expect(await values(Tensor.full([1], Number.NaN, { dtype: 'float8_e4m3fn' }))).toEqual([Number.NaN]);
    expect(await values(Tensor.full([1], 1e300, { dtype: 'float64' }))).toEqual([1e300]);
    expect(await values(Tensor.full([1], 5n, { dtype: 'float32' }))).toEqual([5]);
  });

  it.each([
    [[1, 2, 1000], 'int8', /^data: element 2: value 1000 cannot be converted to type int8 without overflow/],
    [
      [
        [1, 2],
        [3, 2.5],
      ],
      'int64',
      /^data: element 3: value 2.5 cannot be converted to type int64: it holds integers only/,
    ],
    [new Float32Array([1, 70000]), 'float16', /^data: element 1: value 70000 cannot be converted to type float16/],
    [new Float64Array([1e39]), 'float32', /^data: element 0: value 1e\+39 cannot be converted to type float32/],
    [new Int32Array([1, 256]), 'uint8', /^data: element 1: value 256 cannot be converted to type uint8/],
    [[1, Number.NaN], 'int32', /^data: element 1: value NaN cannot be converted to type int32/],
    [[1, '2'], 'float32', /^data: element 1: expected a number or a bigint, got string '2'/],
    [[1n, 2n ** 64n], 'int64', /^data: element 1: value 18446744073709551616n cannot be converted to type int64/],
  ] as const)('fromArray case %# throws naming the element', (data, dtype, message) => {
    const make = () => Tensor.fromArray(data as unknown as number[], { dtype });
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });

  it('passes typed arrays of the dtype itself unchecked and converts fitting values', async () => {
    expect(await values(Tensor.fromArray(new Int8Array([-128, 127])))).toEqual([-128, 127]);
    expect(await values(Tensor.fromArray(new Float32Array([3.5e38]), { dtype: 'float64' }))).toEqual([
      new Float32Array([3.5e38])[0],
    ]);
    expect(await values(Tensor.fromArray([1, 2, 255], { dtype: 'uint8' }))).toEqual([1, 2, 255]);
    expect(await values(Tensor.fromArray([1n, -(2n ** 63n)], { dtype: 'int64' }))).toEqual([1n, -(2n ** 63n)]);
    expect(await values(Tensor.fromArray([Number.POSITIVE_INFINITY], { dtype: 'float32' }))).toEqual([
      Number.POSITIVE_INFINITY,
    ]);
  });
});
