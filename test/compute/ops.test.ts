// Every compute op on host tensors against hand-computed values: broadcasting, dims,
// dtypes (float16/bfloat16/fp8 rounding, integer wrap), and bad input.
import { describe, expect, it } from 'vitest';
import {
  add,
  binary,
  cast,
  compileKernel,
  div,
  exp,
  gelu,
  matmul,
  max,
  mean,
  mul,
  neg,
  reduce,
  relu,
  scale,
  silu,
  softmax,
  sub,
  sum,
  unary,
} from '../../src/compute/index.ts';
import { erf, erfc } from '../../src/compute/erf.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { type DType, Tensor } from '../../src/tensor/index.ts';

const t = (data: number[] | number[][] | number[][][], dtype: DType = 'float32') => Tensor.fromArray(data, { dtype });
const values = async (x: Tensor) => Array.from((await x.toArray()) as ArrayLike<number | bigint>);

function badArg(fn: () => unknown, argument: string, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidArgumentError);
  expect((caught as InvalidArgumentError).argument).toBe(argument);
  expect((caught as Error).message).toMatch(message);
}

describe('elementwise ops on the host', () => {
  it('add, sub, mul, div of same-shape tensors', async () => {
    const a = t([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const b = t([
      [10, 20, 30],
      [40, 50, 60],
    ]);
    expect(await values(add(a, b))).toEqual([11, 22, 33, 44, 55, 66]);
    expect(await values(sub(a, b))).toEqual([-9, -18, -27, -36, -45, -54]);
    expect(await values(mul(a, b))).toEqual([10, 40, 90, 160, 250, 360]);
    expect(await values(div(b, a))).toEqual([10, 10, 10, 10, 10, 10]);
    expect(add(a, b).shape).toEqual([2, 3]);
    expect(add(a, b).dtype).toBe('float32');
  });

  it('broadcasts over trailing dims, either side, and with leading 1s', async () => {
    const a = t([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(await values(add(a, t([10, 20, 30])))).toEqual([11, 22, 33, 14, 25, 36]);
    expect(await values(sub(t([10, 20, 30]), a))).toEqual([9, 18, 27, 6, 15, 24]);
    expect(await values(mul(a, t([[2, 3, 4]])))).toEqual([2, 6, 12, 8, 15, 24]);
    expect(sub(t([10, 20, 30]), a).shape).toEqual([2, 3]);
    const x3 = Tensor.arange(12, { dtype: 'float32' }).reshape([2, 2, 3]);
    expect(await values(add(x3, a))).toEqual([1, 3, 5, 7, 9, 11, 7, 9, 11, 13, 15, 17]);
  });

  it('takes a number as a scalar operand; scale multiplies', async () => {
    const a = t([1, -2, 3.5]);
    expect(await values(add(a, 1))).toEqual([2, -1, 4.5]);
    expect(await values(sub(a, 1))).toEqual([0, -3, 2.5]);
    expect(await values(div(a, 2))).toEqual([0.5, -1, 1.75]);
    expect(await values(scale(a, -2))).toEqual([-2, 4, -7]);
  });

  it('rounds float32 results like float32 arithmetic', async () => {
    // 1 + 2^-24 is not a float32: the sum rounds to even (1); 1 + 3·2^-24 rounds up.
    expect(await values(add(t([1, 1]), t([2 ** -24, 3 * 2 ** -24])))).toEqual([1, 1 + 2 ** -22]);
    expect(await values(div(t([1]), 3))).toEqual([Math.fround(1 / 3)]);
  });

  it('computes float16 and bfloat16 in float32 and rounds to nearest even on store', async () => {
    // float16 has 10 mantissa bits: 2048 + 1 is a tie → 2048; 2048 + 3 → 2052.
    expect(await values(add(t([2048, 2048], 'float16'), t([1, 3], 'float16')))).toEqual([2048, 2052]);
    // bfloat16 has 7: 256 + 1 → 256 (tie to even); 256 + 3 → 260.
    expect(await values(add(t([256, 256], 'bfloat16'), t([1, 3], 'bfloat16')))).toEqual([256, 260]);
    expect(await values(mul(t([60000], 'float16'), 2))).toEqual([Infinity]);
    expect(add(t([1], 'bfloat16'), 1).dtype).toBe('bfloat16');
  });

  it('wraps integer math like two’s complement', async () => {
    expect(await values(add(t([2147483647, -5], 'int32'), 1))).toEqual([-2147483648, -4]);
    expect(await values(mul(t([65536, 3], 'int32'), t([65536, -7], 'int32')))).toEqual([0, -21]);
    expect(await values(add(t([127, 0], 'int8'), 1))).toEqual([-128, 1]);
    expect(await values(sub(t([0, 200], 'uint8'), 1))).toEqual([255, 199]);
    expect(await values(neg(t([5, 0], 'uint8')))).toEqual([251, 0]);
    const big = Tensor.fromArray([9223372036854775807n, -3n], { dtype: 'int64' });
    expect(await values(add(big, 1))).toEqual([-9223372036854775808n, -2n]);
    expect(await values(mul(big, Tensor.fromArray([2n, 5n], { dtype: 'int64' })))).toEqual([-2n, -15n]);
  });

  it('neg, relu, gelu, silu, exp', async () => {
    const x = t([-2, -0.5, 0, 0.5, 2]);
    expect(await values(neg(x))).toEqual([2, 0.5, -0, -0.5, -2]);
    expect(await values(relu(x))).toEqual([0, 0, 0, 0.5, 2]);
    expect(await values(relu(t([Number.NaN, -1])))).toEqual([Number.NaN, 0]);
    expect(await values(relu(t([-3, 4], 'int32')))).toEqual([0, 4]);
    // gelu(x) = x·Φ(x): Φ(2) = 0.9772498680518208, Φ(-0.5) = 0.3085375387259869.
    const g = await values(gelu(x));
    expect(g[4]).toBe(Math.fround(2 * 0.9772498680518208));
    expect(g[1]).toBe(Math.fround(-0.5 * 0.3085375387259869));
    expect(g[2]).toBe(0);
    // silu(x) = x / (1 + e^-x)
    expect((await values(silu(x)))[4]).toBe(Math.fround(2 / (1 + Math.exp(-2))));
    expect(await values(exp(t([0, 1, -Infinity])))).toEqual([1, Math.fround(Math.E), 0]);
  });

  it('erf and erfc match mpmath to a few units in the last place, erfc relative in its tail', () => {
    // [x, erf(x), erfc(x)] from mpmath at 40 digits, rounded to doubles.
    const ref: [number, number, number][] = [
      [0, 0, 1],
      [0.25, 0.27632639016823696, 0.7236736098317631],
      [0.5, 0.5204998778130465, 0.4795001221869535],
      [1, 0.8427007929497149, 0.15729920705028513],
      [2, 0.9953222650189527, 0.004677734981047266],
      [3, 0.9999779095030014, 2.209049699858544e-5],
      [4, 0.9999999845827421, 1.541725790028002e-8],
      [6, 1, 2.1519736712498913e-17],
      [10, 1, 2.088487583762545e-45],
      [-0.25, -0.27632639016823696, 1.276326390168237],
      [-1.5, -0.9661051464753108, 1.9661051464753108],
      [-3, -0.9999779095030014, 1.9999779095030015],
      [-5, -0.9999999999984626, 1.9999999999984626],
    ];
    const rel = (got: number, want: number) => (want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want));
    for (const [x, e, c] of ref) {
      expect(rel(erf(x), e), `erf(${x})`).toBeLessThan(4e-16);
      expect(rel(erfc(x), c), `erfc(${x})`).toBeLessThan(8e-16);
    }
    expect(erfc(30)).toBe(0);
    expect(erfc(-30)).toBe(2);
    expect(erf(Number.NaN)).toBeNaN();
    expect(erfc(Number.NaN)).toBeNaN();
  });

  it('gelu keeps relative accuracy in its negative tail (no 1 + erf cancellation)', async () => {
    // 0.5·x·erfc(−x/√2) from mpmath at 40 digits. 1 + erf(x/√2) in doubles was off by 2.6e-12
    // relative at x = −3.415 and by 1e-4 in float32 at x = −3.725.
    const ref: [number, number][] = [
      [-3.415034798614215, -0.0010889498145741357],
      [-3.725344657897949, -0.00036331151577715287],
      [-5, -1.4332578593959695e-6],
      [-8, -4.976768459417427e-15],
      [-1, -0.15865525393145705],
      [1.5, 1.399789198096713],
    ];
    // Rounding x/√2 (half an ulp) moves erfc(t) by about 2t² = x² of that relatively: the
    // bound is (x² + 4) ulps, the argument's rounding plus a few for erfc and the products.
    const xs = ref.map(([x]) => x);
    const got = (await values(gelu(t(xs, 'float64')))) as number[];
    for (const [i, [x, want]] of ref.entries())
      expect(Math.abs(got[i] - want) / Math.abs(want), `gelu(${x})`).toBeLessThan((x * x + 4) * 2 ** -52);
  });

  it('keeps views and non-contiguous inputs right', async () => {
    const a = Tensor.arange(6, { dtype: 'float32' }).reshape([2, 3]);
    const at = a.movedim(0, 1); // [3, 2]: 0 3 / 1 4 / 2 5
    expect(await values(add(at, t([100, 200])))).toEqual([100, 203, 101, 204, 102, 205]);
  });
});

describe('cast on the host', () => {
  it('rounds to float16, bfloat16 and both fp8 formats', async () => {
    const x = t([1 + 2 ** -11, 1 + 3 * 2 ** -11, 1000.7, 70000]);
    expect(await values(cast(x, 'float16'))).toEqual([1, 1 + 2 ** -9, 1000.5, Infinity]);
    expect(await values(cast(t([1 + 2 ** -8, 1 + 3 * 2 ** -8, -300.5]), 'bfloat16'))).toEqual([1, 1 + 2 ** -6, -300]);
    // e4m3fn: 3 mantissa bits, max 448, no Inf: past the tie at 464 the rounding lands on
    // the NaN code, as torch's conversion does; 480 and beyond is NaN outright.
    expect(await values(cast(t([1.0625, 1.1875, 448, 460, 470, 480, -0.001]), 'float8_e4m3fn'))).toEqual([
      1,
      1.25,
      448,
      448,
      Number.NaN,
      Number.NaN,
      -0.001953125,
    ]);
    // e5m2: 2 mantissa bits, max 57344, overflow is Inf.
    expect(await values(cast(t([1.125, 1.375, 57344, 61440, -70000]), 'float8_e5m2'))).toEqual([
      1,
      1.5,
      57344,
      Infinity,
      -Infinity,
    ]);
  });

  it('truncates floats to integers, wraps narrowing integer casts, and widens exactly', async () => {
    expect(await values(cast(t([-3.7, 3.7, 300.5, Number.NaN]), 'int8'))).toEqual([-3, 3, 44, 0]);
    expect(await values(cast(t([-3.7, 255.9]), 'uint8'))).toEqual([253, 255]);
    expect(await values(cast(t([2.5, -2.5]), 'int64'))).toEqual([2n, -2n]);
    const big = Tensor.fromArray([4294967297n, -1n], { dtype: 'int64' });
    expect(await values(cast(big, 'int32'))).toEqual([1, -1]);
    expect(await values(cast(big, 'float64'))).toEqual([4294967297, -1]);
    expect(await values(cast(t([-2, 7], 'int8'), 'float32'))).toEqual([-2, 7]);
  });

  it('converts every dtype to every other', async () => {
    const dtypes: DType[] = [
      'float32',
      'float16',
      'bfloat16',
      'float64',
      'int8',
      'uint8',
      'int32',
      'int64',
      'float8_e4m3fn',
      'float8_e5m2',
    ];
    for (const from of dtypes)
      for (const to of dtypes) {
        const y = cast(t([0, 1, 2, 6], from), to);
        expect([from, to, y.dtype, (await values(y)).map(Number)]).toEqual([from, to, to, [0, 1, 2, 6]]);
      }
  });
});

describe('reductions and softmax on the host', () => {
  const x = t([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  it('sum, mean, max over each dim, with and without keepdim', async () => {
    expect(await values(sum(x, 0))).toEqual([5, 7, 9]);
    expect(await values(sum(x, 1))).toEqual([6, 15]);
    expect(await values(sum(x, -1))).toEqual([6, 15]);
    expect(await values(mean(x, 1))).toEqual([2, 5]);
    expect(await values(max(x, 0))).toEqual([4, 5, 6]);
    expect(sum(x, 1).shape).toEqual([2]);
    expect(sum(x, 1, { keepdim: true }).shape).toEqual([2, 1]);
    expect(sum(x, 0, { keepdim: true }).shape).toEqual([1, 3]);
    const x3 = Tensor.arange(24, { dtype: 'float32' }).reshape([2, 3, 4]);
    expect(await values(sum(x3, 1))).toEqual([12, 15, 18, 21, 48, 51, 54, 57]);
    expect(await values(max(x3, 2))).toEqual([3, 7, 11, 15, 19, 23]);
  });

  it('max propagates NaN; empty dims: sum 0, mean NaN, max refused', async () => {
    expect(await values(max(t([[1, Number.NaN, 3]]), 1))).toEqual([Number.NaN]);
    const empty = Tensor.empty([2, 0]);
    expect(await values(sum(empty, 1))).toEqual([0, 0]);
    expect(await values(mean(empty, 1))).toEqual([Number.NaN, Number.NaN]);
    badArg(() => max(empty, 1), 'x', /size 0/);
  });

  it('integer sums wrap in the input dtype; half types round once', async () => {
    expect(await values(sum(t([[100, 100]], 'int8'), 1))).toEqual([-56]);
    expect(await values(sum(Tensor.fromArray([[1n << 62n, 1n << 62n]], { dtype: 'int64' }), 1))).toEqual([
      -(1n << 63n),
    ]);
    expect(await values(max(t([[-5, -9]], 'int32'), 1))).toEqual([-5]);
    expect(await values(sum(t([[1024, 1, 1]], 'float16'), 1))).toEqual([1026]);
  });

  it('float sums accumulate in float32 (float64 for float64), as on the device', async () => {
    // 1 + 2^-24 rounds to 1 in float32 at each step; a float64 sum would give 1 + 2^-23.
    const tinyTerms = [[1, 2 ** -24, 2 ** -24]];
    expect(await values(sum(t(tinyTerms), 1))).toEqual([1]);
    expect(await values(sum(t(tinyTerms, 'bfloat16'), 1))).toEqual([1]);
    expect(await values(sum(t(tinyTerms, 'float64'), 1))).toEqual([1 + 2 ** -23]);
  });

  it('softmax over the last dim', async () => {
    const s = await values(
      softmax(
        t([
          [0, Math.log(3)],
          [5, 5],
        ]),
      ),
    );
    expect(s.map((v) => Number(v))).toEqual([0.25, 0.75, 0.5, 0.5]);
    const y = await values(softmax(t([[1000, 1000, 1000, 1000]])));
    expect(y).toEqual([0.25, 0.25, 0.25, 0.25]); // max subtracted: no overflow
    badArg(() => softmax(x, 0), 'dim', /last dim only/);
  });
});

describe('matmul on the host', () => {
  it('2-D, batched, and batched with a shared 2-D b', async () => {
    const a = t([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const b = t([
      [1, 0, 2],
      [0, 1, 3],
    ]);
    const c = matmul(a, b);
    expect(c.shape).toEqual([3, 3]);
    expect(await values(c)).toEqual([1, 2, 8, 3, 4, 18, 5, 6, 28]);
    const ab = Tensor.arange(12, { dtype: 'float32' }).reshape([2, 3, 2]);
    const bb = Tensor.fromArray([1, 0, 0, 1, 2, 0, 0, 2], { shape: [2, 2, 2] });
    expect(await values(matmul(ab, bb))).toEqual([0, 1, 2, 3, 4, 5, 12, 14, 16, 18, 20, 22]);
    expect(matmul(ab, b).shape).toEqual([2, 3, 3]);
    expect(await values(matmul(ab, b))).toEqual([0, 1, 3, 2, 3, 13, 4, 5, 23, 6, 7, 33, 8, 9, 43, 10, 11, 53]);
  });

  it('float16 and bfloat16 accumulate in float32 and round the result once', async () => {
    // 256·1 + 1·1 = 257: exact in the float32 accumulator, 256 after rounding to bfloat16.
    const a = t([[256, 1]], 'bfloat16');
    const b = t([[1], [1]], 'bfloat16');
    expect(await values(matmul(a, b))).toEqual([256]);
    expect(await values(matmul(t([[2048, 1, 1]], 'float16'), t([[1], [1], [1]], 'float16')))).toEqual([2050]);
  });

  it('refuses bad shapes and dtypes', () => {
    badArg(() => matmul(t([[1, 2]]), t([[1, 2]])), 'b', /inner dims differ/);
    badArg(() => matmul(t([1, 2]), t([[1], [2]])), 'a', /2-D or batched/);
    badArg(() => matmul(t([[1]], 'int32'), t([[1]], 'int32')), 'a', /matmul supports .*got int32/);
    badArg(() => matmul(t([[1]]), t([[1]], 'float16')), 'b', /differs/);
    const a3 = Tensor.empty([2, 1, 1]);
    badArg(() => matmul(a3, Tensor.empty([3, 1, 1])), 'b', /batch dims/);
  });
});

describe('bad input', () => {
  it('shape mismatch, dtype mismatch, unsupported dtype, unknown op, bad dim', () => {
    badArg(() => add(t([1, 2, 3]), t([1, 2])), 'b', /do not broadcast/);
    badArg(
      () =>
        add(
          t([
            [1, 2],
            [3, 4],
          ]),
          t([[1, 2, 3]]),
        ),
      'b',
      /do not broadcast/,
    );
    badArg(() => add(t([1]), t([1], 'float16')), 'b', /dtype float16 differs/);
    badArg(() => add(t([1], 'float8_e4m3fn'), 1), 'a', /not defined on float8_e4m3fn/);
    badArg(() => div(t([1], 'int32'), 2), 'a', /needs a floating dtype/);
    badArg(() => gelu(t([1], 'int64')), 'x', /needs a floating dtype/);
    badArg(() => add(t([1], 'int32'), 1.5), 'b', /integer scalar/);
    badArg(() => binary('pow', t([1]), 2), 'op', /unknown binary op 'pow'; known: add, sub, mul, div/);
    badArg(() => unary('tanh', t([1])), 'op', /unknown unary op 'tanh'/);
    badArg(() => reduce('prod' as 'sum', t([1]), 0), 'op', /unknown reduction 'prod'/);
    badArg(() => sum(t([1, 2]), 1), 'dim', /out of range/);
    badArg(() => mean(t([1], 'int32'), 0), 'x', /needs a floating dtype/);
    badArg(() => cast(t([1]), 'float128' as DType), 'dtype', /unknown dtype 'float128'/);
    badArg(() => add([1, 2] as unknown as Tensor, 1), 'a', /expected a Tensor/);
  });
});

describe('user kernels on the host', () => {
  const src = 'extern "C" __global__ void twice(float *x, int n) { int i = threadIdx.x; if (i < n) x[i] *= 2; }';
  it('runs the host implementation for host tensors', async () => {
    const k = compileKernel(src, 'twice', {
      host: (_config, args) => {
        const x = args[0] as Tensor;
        const v = x.hostView() as Float32Array;
        for (let i = 0; i < v.length; i++) v[i] *= 2;
      },
    });
    const x = t([1, 2, 3]);
    k.launch({ grid: 1, block: 32 }, [x, { i32: 3 }]);
    expect(await values(x)).toEqual([2, 4, 6]);
  });

  it('says what is missing: a host implementation, a name, a declared argument type', () => {
    const k = compileKernel(src, 'twice');
    badArg(() => k.launch({ grid: 1, block: 32 }, [t([1]), { i32: 1 }]), 'args', /no host implementation/);
    badArg(() => compileKernel(src, 'not a name'), 'name', /C identifier/);
    badArg(() => compileKernel('', 'twice'), 'source', /CUDA C source/);
  });
});
