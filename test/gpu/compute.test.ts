// Every compute op on cuda:0 against the host implementation of the same op, for each
// dtype it supports. Tolerances:
// - exact: elementwise arithmetic, casts, relu, neg, max and integer sums (one IEEE
//   operation in the same precision, or integer math); matmul on small integers (fp32
//   accumulation of exact products).
// - exp, gelu, silu: relative only, 1e-5 (float32), 1e-12 (float64), one unit in the last
//   place of float16/bfloat16 (the device's float32 math can round the other way on a
//   tie), and one step of the dtype's smallest subnormal. gelu is 0.5·x·erfc(−x/√2) on both
//   sides, so its negative tail keeps relative accuracy (1 + erf(x/√2) in float32 was off
//   by 1e-4 relative at x = −3.7).
// - float sums and means: the rounding-error bound of a sum, relative to Σ|x| and not to
//   |Σx| (a sum that cancels to near zero keeps only that absolute accuracy): both sides
//   accumulate in float32 (float64 for float64) in different orders, so
//   |device − host| ≤ 2·n·u·Σ|x| (÷ n for a mean), u = 2⁻²⁴ (2⁻⁵³), plus the relative
//   tolerance above for the rounding of the result to the dtype.
// - softmax: the relative tolerance above plus 1e-6 (float32, half types) or 1e-13 (float64) absolute.
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import {
  KernelCompileError,
  add,
  binary,
  cast,
  compileKernel,
  div,
  gelu,
  matmul,
  mul,
  reduce,
  softmax,
  sub,
  unary,
} from '../../src/index.ts';
import { compileKernel as compileKernelDirect, generatedKernelCount } from '../../src/compute/index.ts';
import { KernelCompileError as CompileErr } from '../../src/errors.ts';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { captureGraph } from '../../src/parallel/graph.ts';
import { DTYPES, type DType, Tensor, setDevice } from '../../src/tensor/index.ts';
import { callAllReported } from '../helpers.ts';
import { placement, rehearsal, world } from './world.ts';

const gpus = cudaDeviceCount();
const FLOATS: DType[] = ['float32', 'float64', 'float16', 'bfloat16'];
const INTS: DType[] = ['int32', 'int64', 'int8', 'uint8'];

/** Deterministic inputs: small values that every dtype holds (uint8 non-negative). */
function inputs(dtype: DType, n: number, seed: number, positive = false): number[] {
  return Array.from({ length: n }, (_, i) => {
    const h = Math.sin((i + 1) * 12.9898 + seed * 78.233) * 43758.5453;
    const u = h - Math.floor(h); // [0, 1)
    if (INTS.includes(dtype)) return Math.floor(u * (dtype === 'uint8' ? 100 : 200)) - (dtype === 'uint8' ? 0 : 100);
    const v = (u * 8 - 4) * (positive ? 0 : 1) + (positive ? 0.5 + u * 4 : 0);
    return v;
  });
}

function ulp(dtype: DType): number {
  return dtype === 'bfloat16' ? 2 ** -7 : dtype === 'float16' ? 2 ** -10 : dtype === 'float32' ? 1e-5 : 1e-12;
}

/** The smallest positive (subnormal) value of a floating dtype. */
function tiny(dtype: DType): number {
  return dtype === 'float16' ? 2 ** -24 : dtype === 'bfloat16' || dtype === 'float32' ? 2 ** -149 : 2 ** -1074;
}

/**
 * Equal, or (not `exact`) within one unit of the dtype relative plus `atol` absolute:
 * a number, or one bound per element (default: 1e-6 for float32 and the half types,
 * 1e-13 for float64).
 */
async function expectClose(
  dev: Tensor,
  host: Tensor,
  exact: boolean,
  label: string,
  atol?: number | readonly number[],
) {
  expect(dev.shape, label).toEqual(host.shape);
  expect(dev.dtype, label).toBe(host.dtype);
  const got = Array.from((await dev.toArray()) as ArrayLike<number | bigint>).map(Number);
  const want = Array.from((await host.toArray()) as ArrayLike<number | bigint>).map(Number);
  const tol = ulp(host.dtype);
  const abs = atol ?? (host.dtype === 'float64' ? 1e-13 : 1e-6);
  const bound = (i: number) => (typeof abs === 'number' ? abs : abs[i]);
  const bad = want.findIndex((w, i) => {
    const g = got[i];
    if (Number.isNaN(w)) return !Number.isNaN(g);
    if (exact) return g !== w;
    return !(Math.abs(g - w) <= tol * Math.abs(w) + bound(i) || g === w);
  });
  expect(
    bad === -1 ? null : `${label}: element ${bad} is ${got[bad]}, host ${want[bad]} (bound ${bound(bad)})`,
  ).toBeNull();
}

describe.skipIf(gpus === 0)('compute ops on cuda:0 match the host', () => {
  if (gpus > 0) setDevice(0);
  const dev = (t: Tensor) => t.to('cuda:0');

  it.each([...FLOATS, ...INTS])(
    'add, sub, mul (and div for floats): same shape, broadcast, scalar — %s',
    async (dtype) => {
      const a = Tensor.fromArray(inputs(dtype, 6 * 1031, 1), { shape: [6, 1031], dtype });
      const b = Tensor.fromArray(inputs(dtype, 6 * 1031, 2, true), { shape: [6, 1031], dtype });
      const row = Tensor.fromArray(inputs(dtype, 1031, 3, true), { dtype });
      const ops = FLOATS.includes(dtype) ? ['add', 'sub', 'mul', 'div'] : ['add', 'sub', 'mul'];
      for (const op of ops) {
        await expectClose(binary(op, dev(a), dev(b)), binary(op, a, b), true, `${op} ${dtype}`);
        await expectClose(binary(op, dev(a), dev(row)), binary(op, a, row), true, `${op} ${dtype} broadcast`);
        await expectClose(binary(op, dev(row), dev(a)), binary(op, row, a), true, `${op} ${dtype} broadcast left`);
        await expectClose(binary(op, dev(a), 3), binary(op, a, 3), true, `${op} ${dtype} scalar`);
      }
      // A view with an odd offset: not 16-byte aligned, so the scalar (non-vector) kernel.
      const va = a.reshape([-1]).narrow(0, 1, 4097);
      const vb = b.reshape([-1]).narrow(0, 3, 4097);
      await expectClose(
        add(dev(a).reshape([-1]).narrow(0, 1, 4097), dev(b).reshape([-1]).narrow(0, 3, 4097)),
        add(va, vb),
        true,
        `add ${dtype} unaligned`,
      );
    },
  );

  it.each([...FLOATS, ...INTS])('neg, relu (and gelu, silu, exp for floats) — %s', async (dtype) => {
    const x = Tensor.fromArray(inputs(dtype, 5000, 4), { dtype });
    for (const op of ['neg', 'relu']) await expectClose(unary(op, dev(x)), unary(op, x), true, `${op} ${dtype}`);
    if (FLOATS.includes(dtype))
      for (const op of ['gelu', 'silu', 'exp'])
        await expectClose(unary(op, dev(x)), unary(op, x), false, `${op} ${dtype}`, tiny(dtype));
  });

  it.each(DTYPES)('cast from %s to every dtype', async (from) => {
    const vals = [0, 1, 2, 3, 6, 7, 15, 100, 120]
      .flatMap((v) => (from === 'uint8' ? [v] : [v, -v]))
      .concat(from.includes('float') ? [0.5, -2.75, 1.0625, 300.5] : []);
    const x = Tensor.fromArray(vals, { dtype: from });
    for (const to of DTYPES) await expectClose(cast(dev(x), to), cast(x, to), true, `cast ${from} → ${to}`);
  });

  it.each([...FLOATS, ...INTS])('sum, mean (floats) and max over each dim — %s', async (dtype) => {
    const x = Tensor.fromArray(inputs(dtype, 3 * 517 * 5, 5), { shape: [3, 517, 5], dtype });
    // |x| as float64, to sum exactly enough for the bounds.
    const absX = Tensor.fromArray(
      Array.from((await x.toArray()) as ArrayLike<number | bigint>, (v) => Math.abs(Number(v))),
      { shape: x.shape, dtype: 'float64' },
    );
    const u = dtype === 'float64' ? 2 ** -53 : 2 ** -24;
    for (const dim of [0, 1, 2, -1])
      for (const op of ['sum', 'mean', 'max'] as const) {
        if (op === 'mean' && !FLOATS.includes(dtype)) continue;
        const exact = op === 'max' || !FLOATS.includes(dtype);
        // Each side's float sum is within (n − 1)·u·Σ|x| of the exact one, whatever its order.
        const n = x.shape.at(dim) as number;
        const sumAbs = Array.from((await reduce('sum', absX, dim).toArray()) as Float64Array);
        const atol = sumAbs.map((s) => (2 * n * u * s) / (op === 'mean' ? n : 1));
        await expectClose(reduce(op, dev(x), dim), reduce(op, x, dim), exact, `${op} dim ${dim} ${dtype}`, atol);
        await expectClose(
          reduce(op, dev(x), dim, { keepdim: true }),
          reduce(op, x, dim, { keepdim: true }),
          exact,
          `${op} keepdim ${dtype}`,
          atol,
        );
      }
  });

  it.each(FLOATS)('softmax over the last dim — %s', async (dtype) => {
    for (const n of [1, 7, 1000, 4099]) {
      const x = Tensor.fromArray(inputs(dtype, 3 * n, 6), { shape: [3, n], dtype });
      await expectClose(softmax(dev(x)), softmax(x), false, `softmax n=${n} ${dtype}`);
    }
  });

  it.each(['float32', 'float16', 'bfloat16', 'float64'] as DType[])(
    'matmul 2-D, batched and with a shared b — %s',
    async (dtype) => {
      const int = (n: number, seed: number) => inputs('int8', n, seed).map((v) => v % 5);
      for (const [m, k, n] of [
        [1, 1, 1],
        [64, 96, 48],
        [129, 257, 65],
      ]) {
        const a = Tensor.fromArray(int(m * k, 7), { shape: [m, k], dtype });
        const b = Tensor.fromArray(int(k * n, 8), { shape: [k, n], dtype });
        await expectClose(matmul(dev(a), dev(b)), matmul(a, b), true, `matmul ${m}x${k}x${n} ${dtype}`);
        const a3 = Tensor.fromArray(int(3 * m * k, 9), { shape: [3, m, k], dtype });
        const b3 = Tensor.fromArray(int(3 * k * n, 10), { shape: [3, k, n], dtype });
        await expectClose(matmul(dev(a3), dev(b3)), matmul(a3, b3), true, `batched ${dtype}`);
        await expectClose(matmul(dev(a3), dev(b)), matmul(a3, b), true, `shared b ${dtype}`);
      }
      // Random float32 values: within 1e-5 relative of the host (summation order differs).
      if (dtype === 'float32') {
        const a = Tensor.fromArray(inputs('float32', 128 * 256, 11), { shape: [128, 256] });
        const b = Tensor.fromArray(inputs('float32', 256 * 64, 12), { shape: [256, 64] });
        const got = (await matmul(dev(a), dev(b)).toArray()) as Float32Array;
        const want = (await matmul(a, b).toArray()) as Float32Array;
        const bad = want.findIndex((w, i) => Math.abs(got[i] - w) > 1e-4 * (1 + Math.abs(w)));
        expect(bad).toBe(-1);
      }
    },
  );

  it('compiles each generated kernel once per device', async () => {
    // Scalar ops on a view that is not 16-byte aligned (the non-vector kernels of
    // gg_mul_float64_same_s and gg_sub_float64_same_s): no other test in this file launches
    // those, so their first calls compile one kernel each.
    const unaligned = (t: Tensor) => t.narrow(0, t.dataPtr % 16n === 0n ? 1 : 0, 2); // float64: 8 bytes off
    const x = unaligned(Tensor.fromArray([0, 1, 2, 3], { dtype: 'float64', device: 'cuda:0' }));
    expect(x.dataPtr % 16n).not.toBe(0n);
    const mx = Tensor.fromArray([0, 1, 2, 3], { dtype: 'float64', device: 'cuda:0' });
    const c0 = generatedKernelCount();
    const m = mul(x, 2);
    expect(generatedKernelCount()).toBe(c0 + 1);
    const d = sub(unaligned(mx), 1);
    expect(generatedKernelCount()).toBe(c0 + 2);
    const vals = async (t: Tensor) => Array.from((await t.toArray()) as Float64Array);
    expect(await vals(m)).toEqual((await vals(x)).map((v) => 2 * v));
    expect(await vals(d)).toEqual((await vals(unaligned(mx))).map((v) => v - 1));
    // Whatever else these use is compiled on its first call; their second calls compile nothing.
    const y = Tensor.fromArray([1, 2, 3, 4], { device: 'cuda:0' });
    const calls = [
      () => mul(x, 2),
      () => sub(unaligned(mx), 1),
      () => add(y, y),
      () => gelu(y),
      () => cast(y, 'bfloat16'),
      () => reduce('sum', y.reshape([2, 2]), 0),
      () => softmax(y),
    ];
    for (const call of calls) call();
    const c1 = generatedKernelCount();
    for (const call of calls) call();
    expect(generatedKernelCount()).toBe(c1);
  });

  it('a stage of ops inside graphCapture: replays recompute from new inputs', async () => {
    const x = Tensor.fromArray([1, 2, 3, 4], { device: 'cuda:0' });
    const w = Tensor.fromArray(
      [
        [1, 0],
        [0, 2],
      ],
      { device: 'cuda:0' },
    );
    const graph = await captureGraph('nccl', () =>
      softmax(add(matmul(x.reshape([2, 2]), w), div(x.reshape([2, 2]), 2))),
    );
    graph.replay();
    const host = softmax(
      add(
        matmul(
          Tensor.fromArray([
            [1, 2],
            [3, 4],
          ]),
          Tensor.fromArray([
            [1, 0],
            [0, 2],
          ]),
        ),
        Tensor.fromArray([
          [0.5, 1],
          [1.5, 2],
        ]),
      ),
    );
    await expectClose(graph.result, host, false, 'captured stage');
    graph.dispose();
  });
});

describe.skipIf(gpus === 0)('user kernels on cuda:0', () => {
  if (gpus > 0) setDevice(0);

  it('compiles from source and launches with tensors and typed numbers', async () => {
    const k = compileKernel(
      `extern "C" __global__ void saxpy(float *y, const float *x, float a, int n) {
         int i = blockIdx.x * blockDim.x + threadIdx.x;
         if (i < n) y[i] = a * x[i] + y[i];
       }`,
      'saxpy',
      { device: 'cuda:0' },
    );
    const n = 1000;
    const x = Tensor.arange(n, { dtype: 'float32', device: 'cuda:0' });
    const y = Tensor.full([n], 1, { device: 'cuda:0' });
    k.launch({ grid: Math.ceil(n / 128), block: 128 }, [y, x, { f32: 2 }, { i32: n }]);
    const got = (await y.toArray()) as Float32Array;
    expect(Array.from(got.slice(0, 4))).toEqual([1, 3, 5, 7]);
    expect(got[n - 1]).toBe(2 * (n - 1) + 1);
    // Dynamic shared memory and a 2-D grid.
    const s = compileKernel(
      `extern "C" __global__ void rev(int *out, const int *in) {
         extern __shared__ int buf[];
         int t = threadIdx.x, b = blockIdx.y * gridDim.x + blockIdx.x;
         buf[t] = in[b * blockDim.x + t];
         __syncthreads();
         out[b * blockDim.x + t] = buf[blockDim.x - 1 - t];
       }`,
      'rev',
    );
    const src = Tensor.arange(4 * 64, { dtype: 'int32', device: 'cuda:0' });
    const out = Tensor.empty([4 * 64], { dtype: 'int32', device: 'cuda:0' });
    s.launch({ grid: [2, 2], block: 64, sharedMemBytes: 64 * 4 }, [out, src]);
    const r = (await out.toArray()) as Int32Array;
    expect([r[0], r[63], r[64], r[255]]).toEqual([63, 0, 127, 192]);
    k.dispose();
    s.dispose();
  });

  it('a compile error comes back as KernelCompileError with NVRTC’s log', () => {
    let caught: unknown;
    try {
      compileKernelDirect('extern "C" __global__ void broken(float *x) { x[0] = undeclared_name; }', 'broken', {
        device: 'cuda:0',
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CompileErr);
    expect(caught).toBeInstanceOf(KernelCompileError);
    const err = caught as KernelCompileError;
    expect(err.code).toBe('GPUGROUP_KERNEL_COMPILE_ERROR');
    expect(err.log).toMatch(/undeclared_name/);
    expect(err.log).toMatch(/error/);
    expect(err.options[0]).toMatch(/^--gpu-architecture=sm_\d+$/);
  });
});

describe.skipIf(gpus === 0)('compute in a captured graph with an all-reduce', () => {
  // One rank on one GPU; N ranks sharing it with GPUGROUP_TEST_SHARED_RANKS=N; else one per GPU.
  const ranks = Math.max(1, rehearsal ? world : Math.min(world, 2));
  it(`relu(a·b) all-reduced over ${ranks} rank(s) and a user kernel, captured and replayed`, async () => {
    const group = await launchGroup({
      worldSize: ranks,
      worker: new URL('../fixtures/compute-worker.ts', import.meta.url),
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(ranks),
    });
    try {
      const [m, k, n] = [64, 96, 32];
      const out = await callAllReported<{ first: number[]; second: number[]; firstZ: number[] }>(
        group,
        'matmulAllReduceGraph',
        m,
        k,
        n,
      );
      // b[p, j] = +1 for even j, −1 for odd j; a is (rank+1) everywhere, then 10 everywhere.
      // relu keeps the even columns: k·(rank+1), all-reduced; the odd ones are 0.
      const row = (perRank: (r: number) => number) =>
        Array.from({ length: n }, (_, j) =>
          j % 2 === 0 ? Array.from({ length: ranks }, (_, r) => k * perRank(r)).reduce((x, y) => x + y, 0) : 0,
        );
      const first = Array.from({ length: m }, () => row((r) => r + 1)).flat();
      const second = Array.from({ length: m }, () => row(() => 10)).flat();
      for (const r of out) {
        expect(r.first).toEqual(first);
        expect(r.firstZ).toEqual(first.map((v) => v + 2));
        expect(r.second).toEqual(second);
      }
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});

describe.skipIf(gpus === 0)('the examples’ rank code on this machine’s GPUs', () => {
  // The examples themselves need one GPU per rank; their workers run here on what there is.
  const ranks = Math.max(1, Math.min(world, 2));
  it(`tensor-parallel's MLP shards (matmul, relu on the device) over TP=${ranks}`, async () => {
    const group = await launchGroup({
      worldSize: ranks,
      tensorParallelSize: ranks,
      worker: new URL('../../examples/workers/tensor-parallel-worker.ts', import.meta.url),
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(ranks),
    });
    try {
      const out = await callAllReported<{ errors: string[] }>(group, 'forward', { tokens: 16, hidden: 64, ffn: 256 });
      for (const r of out) expect(r.errors).toEqual([]);
    } finally {
      await group.shutdown();
    }
  }, 120_000);

  it(`custom-kernel's RMSNorm compiled for the device, all-reduced over ${ranks} rank(s)`, async () => {
    const { rankInput, rmsNormReference, weights } = await import('../../examples/workers/custom-kernel-worker.ts');
    const group = await launchGroup({
      worldSize: ranks,
      worker: new URL('../../examples/workers/custom-kernel-worker.ts', import.meta.url),
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(ranks),
    });
    try {
      const job = { rows: 8, cols: 1000, eps: 1e-6 };
      const out = await callAllReported<{ values: number[] }>(group, 'normalize', job);
      const parts = Array.from({ length: ranks }, (_, r) =>
        rmsNormReference(rankInput(r, job.rows, job.cols), weights(job.cols), job.cols, job.eps),
      );
      const want = parts[0].map((_, i) => parts.reduce((s, p) => s + p[i], 0));
      for (const r of out) {
        const bad = want.findIndex((v, i) => !(Math.abs(r.values[i] - v) <= 1e-5 * Math.max(1, Math.abs(v))));
        expect(bad === -1 ? null : `element ${bad}: ${r.values[bad]} vs ${want[bad]}`).toBeNull();
      }
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});
