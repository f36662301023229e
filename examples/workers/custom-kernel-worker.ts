// Rank side of examples/custom-kernel.ts: an RMSNorm kernel written in CUDA C, compiled
// with NVRTC for this rank's GPU, launched on the rank's stream, then all-reduced. The
// same computation in JavaScript is the kernel's host implementation, which the CPU
// backend runs, and the reference every rank checks against.
import { Tensor, compileKernel, type KernelArg, type LaunchConfig, type RankContext } from 'gpugroup';

// One block per row: each thread sums the squares of a strided part of the row, the
// block adds them up in shared memory, then every element is scaled by 1/rms and its weight.
const SOURCE = `
extern "C" __global__ void rms_norm(float *out, const float *x, const float *w, int cols, float eps) {
  extern __shared__ float partial[];
  const float *row = x + (long long)blockIdx.x * cols;
  float s = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += row[j] * row[j];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  float inv = rsqrtf(partial[0] / cols + eps);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) out[(long long)blockIdx.x * cols + j] = row[j] * inv * w[j];
}`;

/** RMSNorm of each row of `x` [rows, cols] with weights `w`, in float64. */
export function rmsNormReference(x: Float32Array, w: Float32Array, cols: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += x[r * cols + j] ** 2;
    const inv = 1 / Math.sqrt(s / cols + eps);
    for (let j = 0; j < cols; j++) out[r * cols + j] = x[r * cols + j] * inv * w[j];
  }
  return out;
}

/** The kernel's host implementation: same arguments, host tensors. */
function rmsNormHost(_config: LaunchConfig, args: readonly KernelArg[]): void {
  const [out, x, w, cols, eps] = args as [Tensor, Tensor, Tensor, { i32: number }, { f32: number }];
  const y = rmsNormReference(x.hostView() as Float32Array, w.hostView() as Float32Array, cols.i32, eps.f32);
  (out.hostView() as Float32Array).set(y);
}

/** Rank `rank`'s input rows: deterministic, different on every rank. */
export function rankInput(rank: number, rows: number, cols: number): Float32Array {
  return Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37 + rank) * (1 + (i % 5)));
}

/** Weights shared by every rank. */
export function weights(cols: number): Float32Array {
  return Float32Array.from({ length: cols }, (_, j) => 0.5 + (j % 7) / 7);
}

/** Runs the kernel on this rank's rows, all-reduces the result, and returns it. */
export async function normalize(ctx: RankContext, job: { rows: number; cols: number; eps: number }) {
  const { rows, cols, eps } = job;
  const kernel = compileKernel(SOURCE, 'rms_norm', { device: ctx.device, host: rmsNormHost });
  const x = Tensor.fromArray(rankInput(ctx.rank, rows, cols), { shape: [rows, cols], device: ctx.device });
  const w = Tensor.fromArray(weights(cols), { device: ctx.device });
  const y = Tensor.empty([rows, cols], { device: ctx.device });
  const threads = 256;
  const t0 = performance.now();
  kernel.launch({ grid: rows, block: threads, sharedMemBytes: threads * 4 }, [y, x, w, { i32: cols }, { f32: eps }]);
  const sum = await ctx.world.allReduce(y);
  const values = Array.from((await sum.toArray()) as Float32Array);
  const ms = performance.now() - t0;
  for (const t of [x, w, y, sum]) t.dispose();
  kernel.dispose();
  return { rank: ctx.rank, device: ctx.device, values, ms };
}
