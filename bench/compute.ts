/**
 * `npm run bench -- compute`: on one GPU, matmul 8192×8192×8192 in bfloat16 (TFLOP/s,
 * 2·m·n·k per call) and an elementwise add of two 256 MiB float32 and bfloat16 tensors
 * (GB/s counting the two reads and one write, as torch's profiler does). Each figure is
 * the median over 5 runs of 20 calls timed with CUDA events, after 5 warm-up calls (the
 * first compiles the kernel / starts cuBLAS). bench/baselines/torch_compute.py measures
 * torch.matmul and torch.add the same way; both write JSON lines with impl, op, dtype,
 * bytes, us and tflops or gbps.
 */
import { cudaDeviceCount } from '../native/index.ts';
import { add, matmul } from '../src/compute/index.ts';
import { CudaEvent, type DType, Tensor, currentStream, setDevice } from '../src/tensor/index.ts';
import type { BenchOptions } from './options.ts';

const RUNS = 5;
const CALLS = 20;

/** Median µs per call of `body` (each returns a tensor, disposed after the run's events). */
async function time(body: () => Tensor): Promise<number> {
  const stream = currentStream();
  for (let i = 0; i < 5; i++) body().dispose();
  const per: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const start = new CudaEvent(true).record(stream);
    for (let i = 0; i < CALLS; i++) body().dispose();
    const end = new CudaEvent(true).record(stream);
    await end.wait(120_000);
    per.push((end.elapsedMsSince(start) * 1000) / CALLS);
    start.dispose();
    end.dispose();
  }
  per.sort((a, b) => a - b);
  return per[Math.floor(per.length / 2)];
}

export async function run(opts: BenchOptions): Promise<void> {
  if (cudaDeviceCount() < 1) {
    opts.log('compute: needs a GPU; skipped');
    return;
  }
  setDevice(0);
  const n = 8192;
  const a = Tensor.full([n, n], 0.5, { dtype: 'bfloat16', device: 'cuda:0' });
  const b = Tensor.full([n, n], 0.25, { dtype: 'bfloat16', device: 'cuda:0' });
  // Check before timing: every element is 8192 · 0.125 = 1024.
  const c = matmul(a, b);
  const sample = (await c.narrow(0, 0, 1).toArray()) as Float32Array;
  c.dispose();
  if (!sample.every((v) => v === 1024)) throw new Error(`matmul check failed: ${sample[0]} (expected 1024)`);
  const us = await time(() => matmul(a, b));
  const tflops = (2 * n ** 3) / us / 1e6;
  opts.json({ impl: 'gpugroup', op: 'matmul', dtype: 'bfloat16', m: n, n, k: n, bytes: 3 * n * n * 2, us, tflops });
  opts.log(`compute: matmul ${n}³ bfloat16 ${us.toFixed(0)} us/call = ${tflops.toFixed(1)} TFLOP/s`);
  a.dispose();
  b.dispose();

  for (const dtype of ['float32', 'bfloat16'] as DType[]) {
    const bytes = 256 << 20;
    const numel = bytes / (dtype === 'float32' ? 4 : 2);
    const x = Tensor.full([numel], 1, { dtype, device: 'cuda:0' });
    const y = Tensor.full([numel], 2, { dtype, device: 'cuda:0' });
    const z = add(x, y);
    const head = (await z.narrow(0, numel - 4, 4).toArray()) as Float32Array;
    z.dispose();
    if (!head.every((v) => v === 3)) throw new Error(`add check failed: ${head[0]} (expected 3)`);
    const addUs = await time(() => add(x, y));
    const gbps = (3 * bytes) / addUs / 1e3;
    opts.json({ impl: 'gpugroup', op: 'add', dtype, bytes, us: addUs, gbps });
    opts.log(`compute: add 2 × 256 MiB ${dtype} ${addUs.toFixed(1)} us/call = ${gbps.toFixed(0)} GB/s`);
    x.dispose();
    y.dispose();
  }
}
