import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { DTYPES, Tensor } from '../../src/tensor/index.ts';

const arange24 = () => Tensor.arange(24, { dtype: 'float32' }).reshape([2, 3, 4]);

describe('Tensor on the host', () => {
  it('fromArray infers shape and dtype', async () => {
    const t = Tensor.fromArray([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.numel).toBe(6);
    expect(t.nbytes).toBe(24);
    expect(t.device).toBe('cpu');
    expect(Array.from((await t.toArray()) as ArrayLike<number>)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Tensor.fromArray(new Int32Array([1, 2])).dtype).toBe('int32');
    expect(Tensor.fromArray(new BigInt64Array([1n])).dtype).toBe('int64');
    expect(Tensor.fromArray([1n, 2n]).dtype).toBe('int64');
    expect(Tensor.fromArray(new Uint8Array(3)).dtype).toBe('uint8');
  });

  it.each(DTYPES)('round-trips values of %s', async (dtype) => {
    const values = [0, 1, -2, 3, 96, -96].map((v) => (dtype === 'uint8' ? Math.abs(v) : v));
    const t = Tensor.fromArray(values, { dtype });
    const back = await t.toArray();
    const expected = dtype === 'int64' ? values.map(BigInt) : values;
    expect(Array.from(back as ArrayLike<number | bigint>)).toEqual(expected);
    if (['float16', 'bfloat16', 'float8_e4m3fn', 'float8_e5m2'].includes(dtype))
      expect(back).toBeInstanceOf(Float32Array);
  });

  it('rounds on encode: float16 and bfloat16 of 0.1', async () => {
    expect((await Tensor.fromArray([0.1], { dtype: 'float16' }).toArray())[0]).toBe(0.0999755859375);
    expect((await Tensor.fromArray([0.1], { dtype: 'bfloat16' }).toArray())[0]).toBe(0.10009765625);
  });

  it('full, zeros, arange', async () => {
    expect(Array.from((await Tensor.full([2, 2], 7, { dtype: 'int32' }).toArray()) as ArrayLike<number>)).toEqual([
      7, 7, 7, 7,
    ]);
    expect(Array.from((await Tensor.zeros([3]).toArray()) as ArrayLike<number>)).toEqual([0, 0, 0]);
    expect(Array.from((await Tensor.arange(5).toArray()) as ArrayLike<number>)).toEqual([0n, 1n, 2n, 3n, 4n]);
    expect(Array.from((await Tensor.arange(1, 2, 0.25).toArray()) as ArrayLike<number>)).toEqual([1, 1.25, 1.5, 1.75]);
  });

  it('reshape is a view when contiguous and supports -1', async () => {
    const t = arange24();
    const r = t.reshape([4, -1]);
    expect(r.shape).toEqual([4, 6]);
    expect(r.storage).toBe(t.storage);
  });

  it('narrow is a view with the right values', async () => {
    const t = arange24();
    const n = t.narrow(1, 1, 2);
    expect(n.shape).toEqual([2, 2, 4]);
    expect(n.storage).toBe(t.storage);
    expect(n.isContiguous).toBe(false);
    expect(Array.from((await n.toArray()) as ArrayLike<number>)).toEqual([
      4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23,
    ]);
    expect(Array.from((await t.narrow(-1, 3, 1).toArray()) as ArrayLike<number>)).toEqual([3, 7, 11, 15, 19, 23]);
  });

  it('movedim(0, 2) of a (2,3,4) tensor made contiguous equals the hand-computed permutation', async () => {
    const t = arange24();
    const m = t.movedim(0, 2);
    expect(m.shape).toEqual([3, 4, 2]);
    expect(m.isContiguous).toBe(false);
    const expected: number[] = [];
    for (let j = 0; j < 3; j++)
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) expected.push(i * 12 + j * 4 + k);
    const c = m.contiguous();
    expect(c.isContiguous).toBe(true);
    expect(Array.from((await c.toArray()) as ArrayLike<number>)).toEqual(expected);
    expect(Array.from((await m.toArray()) as ArrayLike<number>)).toEqual(expected);
    // A non-contiguous reshape copies.
    expect(Array.from((await m.reshape([-1]).toArray()) as ArrayLike<number>)).toEqual(expected);
  });

  it('movedim with arrays, like torch', () => {
    const t = Tensor.empty([2, 3, 4, 5]);
    expect(t.movedim([0, 1], [2, 3]).shape).toEqual([4, 5, 2, 3]);
    expect(t.movedim(-1, 0).shape).toEqual([5, 2, 3, 4]);
  });

  it('clone copies, contiguous returns itself when already contiguous', async () => {
    const t = Tensor.fromArray([1, 2, 3], { dtype: 'bfloat16' });
    const c = t.clone();
    expect(c.storage).not.toBe(t.storage);
    expect(Array.from((await c.toArray()) as ArrayLike<number>)).toEqual([1, 2, 3]);
    expect(t.contiguous()).toBe(t);
    expect(t.to('cpu').storage).not.toBe(t.storage);
  });

  it('hostView is zero copy over shared memory', () => {
    const sab = new SharedArrayBuffer(64);
    const t = Tensor.fromShared(sab, 16, [4], 'float32');
    t.hostView()[2] = 9;
    expect(new Float32Array(sab, 16, 4)[2]).toBe(9);
  });

  it('rejects bad input before anything is allocated, naming the argument', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => Tensor.empty([-1, 2]), /^shape: /],
      [() => Tensor.empty([1.5]), /^shape: /],
      [
        () => Tensor.fromArray([1, 2, 3], { shape: [2, 2] }),
        /^shape: shape \[2, 2\] holds 4 elements but the data has 3/,
      ],
      [() => Tensor.empty([2], { dtype: 'float128' as never }), /^dtype: unknown dtype/],
      [() => Tensor.empty([2], { device: 'gpu:0' }), /^device: /],
      [() => Tensor.empty([2], { device: 'cuda' }), /^device: /],
      [() => Tensor.empty([2], { device: 'cuda:-1' }), /^device: /],
      [() => arange24().reshape([5, 5]), /^shape: /],
      [() => arange24().narrow(3, 0, 1), /^dim: /],
      [() => arange24().narrow(0, 1, 2), /^narrow: /],
      [() => arange24().movedim(0, 5), /^destination: /],
      [() => Tensor.fromArray([[1, 2], [3]]), /^data: /],
      [() => Tensor.fromShared(new SharedArrayBuffer(8), 4, [2], 'float32'), /^byteOffset: /],
    ];
    for (const [fn, message] of cases) {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(InvalidArgumentError);
      expect((caught as Error).message).toMatch(message);
    }
  });
});
