import { describe, expect, it } from 'vitest';
import { cuda, cudaDeviceCount } from '../../native/index.ts';
import { CudaEvent, DTYPES, Tensor, currentStream, setDevice } from '../../src/tensor/index.ts';

const gpus = cudaDeviceCount();

describe.skipIf(gpus === 0)('device tensors on a real GPU', () => {
  if (gpus > 0) setDevice(0);

  it.each(DTYPES)('round-trips %s through cuda:0', async (dtype) => {
    const values = [0, 1, -2, 3, 96, -96, 0.5, 7]
      .map((v) => (dtype === 'uint8' ? Math.abs(v) : v))
      .map((v) => (dtype.startsWith('int') || dtype === 'uint8' ? Math.trunc(v) : v));
    const host = Tensor.fromArray(values, { dtype, shape: [2, 4] });
    const dev = host.to('cuda:0');
    expect(dev.device).toBe('cuda:0');
    expect(dev.isCuda).toBe(true);
    expect(Array.from((await dev.toArray()) as ArrayLike<unknown>)).toEqual(
      Array.from((await host.toArray()) as ArrayLike<unknown>),
    );
    const back = dev.to('cpu');
    expect(Array.from((await back.toArray()) as ArrayLike<unknown>)).toEqual(
      Array.from((await host.toArray()) as ArrayLike<unknown>),
    );
    dev.dispose();
  });

  it.each(DTYPES)('full on cuda:0 (driver memset or host copy) equals full on the host for %s', async (dtype) => {
    for (const v of [0, 1, -3, 2.5, 7]) {
      const value = dtype.startsWith('int') || dtype === 'uint8' ? Math.abs(Math.trunc(v)) : v;
      for (const shape of [
        [4, 4],
        [3, 5],
      ]) {
        const want = Array.from((await Tensor.full(shape, value, { dtype }).toArray()) as ArrayLike<unknown>);
        const dev = Tensor.full(shape, value, { dtype, device: 'cuda:0' });
        expect(Array.from((await dev.toArray()) as ArrayLike<unknown>)).toEqual(want);
        dev.dispose();
      }
    }
  });

  it.each([
    [[2, 3, 4], 0, 2],
    [[2, 3, 4], 2, 0],
    [[5, 7], 0, 1],
    [[3, 1, 4, 2], 3, 1],
    [[6, 5, 4], 1, 2],
  ])('movedim(%j: %i → %i) then contiguous on device equals the host result', async (shape, src, dst) => {
    const host = Tensor.arange(
      shape.reduce((a, b) => a * b, 1),
      { dtype: 'float32' },
    ).reshape(shape);
    const expected = Array.from((await host.movedim(src, dst).contiguous().toArray()) as Float32Array);
    const dev = host.to('cuda:0');
    const moved = dev.movedim(src, dst);
    const c = moved.contiguous();
    expect(c.isContiguous).toBe(true);
    expect(c.shape).toEqual(host.movedim(src, dst).shape);
    expect(Array.from((await c.toArray()) as Float32Array)).toEqual(expected);
    // A transposed last dim (innermost stride != 1) too, and a narrow view.
    const narrowed = dev.narrow(-1, 1, shape[shape.length - 1] - 1);
    expect(Array.from((await narrowed.toArray()) as Float32Array)).toEqual(
      Array.from((await host.narrow(-1, 1, shape[shape.length - 1] - 1).toArray()) as Float32Array),
    );
    dev.dispose();
    c.dispose();
  });

  it('clone and zeros on device', async () => {
    const t = Tensor.fromArray([1, 2, 3], { device: 'cuda:0', dtype: 'bfloat16' });
    const c = t.clone();
    t.dispose();
    expect(Array.from((await c.toArray()) as Float32Array)).toEqual([1, 2, 3]);
    expect(
      Array.from((await Tensor.zeros([4], { device: 'cuda:0', dtype: 'int64' }).toArray()) as BigInt64Array),
    ).toEqual([0n, 0n, 0n, 0n]);
  });

  it('freed memory goes back to the pool: 2,000 × 16 MiB allocations do not grow device usage', async () => {
    const rt = cuda();
    const free = new BigUint64Array(1);
    const total = new BigUint64Array(1);
    const warm = Tensor.empty([4 << 20], { device: 'cuda:0' });
    warm.dispose();
    await currentStream().synchronize();
    rt.cudaMemGetInfo(free, total);
    const before = free[0];
    for (let i = 0; i < 2000; i++) Tensor.empty([4 << 20], { device: 'cuda:0' }).dispose();
    await currentStream().synchronize();
    rt.cudaMemGetInfo(free, total);
    expect(Number(before - free[0])).toBeLessThanOrEqual(64 << 20);
  });

  it('small blocks come back from the per-stream cache: 5,000 full/dispose cycles keep values right and memory flat', async () => {
    const rt = cuda();
    const free = new BigUint64Array(1);
    const total = new BigUint64Array(1);
    const first = Tensor.full([1024], 1, { device: 'cuda:0' });
    const ptr = first.dataPtr;
    first.dispose();
    const again = Tensor.full([1000], 2, { device: 'cuda:0' }); // same 4 KiB size class
    expect(again.dataPtr).toBe(ptr);
    expect(Array.from((await again.toArray()) as Float32Array)).toEqual(Array(1000).fill(2));
    again.dispose();
    await currentStream().synchronize();
    rt.cudaMemGetInfo(free, total);
    const before = free[0];
    for (let i = 0; i < 5000; i++) {
      const t = Tensor.full([1000 + (i % 7) * 100], i, { device: 'cuda:0' });
      if (i % 997 === 0) expect(new Set((await t.toArray()) as Float32Array)).toEqual(new Set([i]));
      t.dispose();
    }
    await currentStream().synchronize();
    rt.cudaMemGetInfo(free, total);
    expect(Number(before - free[0])).toBeLessThanOrEqual(64 << 20);
  });

  it('toArray waits without blocking the event loop', async () => {
    const t = Tensor.fromArray([42], { device: 'cuda:0' });
    const big = Tensor.zeros([256 << 20], { device: 'cuda:0', dtype: 'uint8' });
    for (let i = 0; i < 200; i++) big.clone().dispose(); // ~100 GB of device copies queued ahead
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const values = await t.toArray();
    clearInterval(timer);
    expect(values[0]).toBe(42);
    expect(ticks).toBeGreaterThan(0);
    big.dispose();
  });

  it('events measure elapsed time and waits have deadlines', async () => {
    const start = new CudaEvent(true).record();
    Tensor.zeros([1 << 20], { device: 'cuda:0' }).dispose();
    const end = new CudaEvent(true).record();
    await end.wait(10_000);
    expect(end.elapsedMsSince(start)).toBeGreaterThanOrEqual(0);
    start.dispose();
    end.dispose();
  });
});
