// Rank side of examples/tensor-parallel.ts: one MLP block split Megatron-style over the
// TP group. W1 is split by columns (column-parallel), W2 by rows (row-parallel):
//
//   h_r = relu(x · W1[:, shard r])     local, no communication
//   h   = allGather(h_r, -1)           what a column-parallel layer with gather_output returns
//   y   = allReduce(h_r · W2[shard r, :])   the row-parallel layer's partial sums
//
// Each rank computes its shard on its own device with gpugroup's matmul and relu (cuBLAS
// and a generated kernel on a GPU, host loops on the CPU backend). Every value is a small
// integer, so float32 results are exact and each rank can check against the unsplit
// computation done on the host.
import { Tensor, matmul as deviceMatmul, relu as deviceRelu, type RankContext } from 'gpugroup';

export interface MlpShape {
  tokens: number;
  hidden: number;
  ffn: number;
}

/** A deterministic small integer in [-span, span] for element `i` of matrix `seed`. */
function value(seed: number, i: number, span: number): number {
  const h = Math.imul(i + 1, 2654435761) ^ Math.imul(seed + 7, 40503);
  return ((h >>> 7) % (2 * span + 1)) - span;
}

/** Row-major [rows, cols] matrix `seed`. */
function matrix(seed: number, rows: number, cols: number, span: number): Float32Array {
  return Float32Array.from({ length: rows * cols }, (_, i) => value(seed, i, span));
}

/** a [n, k] · b [k, m], with b's columns [c0, c1) and rows [r0, r0 + k). */
function matmul(
  a: Float32Array,
  n: number,
  k: number,
  b: Float32Array,
  bCols: number,
  r0: number,
  c0: number,
  c1: number,
): Float32Array {
  const m = c1 - c0;
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[(r0 + p) * bCols + c0 + j];
      out[i * m + j] = s;
    }
  }
  return out;
}

const relu = (a: Float32Array) => a.map((v) => Math.max(0, v));

/** The unsplit block for data-parallel replica `replica`: x, h = relu(x·W1), y = h·W2. */
export function reference(shape: MlpShape, replica: number): { x: Float32Array; h: Float32Array; y: Float32Array } {
  const { tokens, hidden, ffn } = shape;
  const x = matrix(100 + replica, tokens, hidden, 2); // each replica gets its own batch
  const w1 = matrix(1, hidden, ffn, 1);
  const w2 = matrix(2, ffn, hidden, 1);
  const h = relu(matmul(x, tokens, hidden, w1, ffn, 0, 0, ffn));
  const y = matmul(h, tokens, ffn, w2, hidden, 0, 0, hidden);
  return { x, h, y };
}

function firstMismatch(got: ArrayLike<number>, want: Float32Array): string | null {
  if (got.length !== want.length) return `${got.length} elements, expected ${want.length}`;
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `element ${i} is ${got[i]}, expected ${want[i]}`;
  return null;
}

/** One forward pass of the TP-split block; returns what went wrong (nothing when right) and the time. */
export async function forward(ctx: RankContext, shape: MlpShape) {
  const { tokens, hidden, ffn } = shape;
  const tp = ctx.tp.worldSize;
  const r = ctx.tp.rankInGroup;
  if (ffn % tp !== 0) throw new RangeError(`ffn ${ffn} does not split over tensor parallel size ${tp}`);
  const shard = ffn / tp;
  const replica = ctx.dp.rankInGroup;
  const { x, h: hRef, y: yRef } = reference(shape, replica);
  const w1 = matrix(1, hidden, ffn, 1);
  const w2 = matrix(2, ffn, hidden, 1);
  // This rank's shards of the weights: W1's columns [r·shard, (r+1)·shard), W2's rows.
  const w1Shard = Tensor.fromArray(w1, { shape: [hidden, ffn] })
    .narrow(1, r * shard, shard)
    .to(ctx.device);
  const w2Shard = Tensor.fromArray(w2, { shape: [ffn, hidden] })
    .narrow(0, r * shard, shard)
    .to(ctx.device);
  const xDev = Tensor.fromArray(x, { shape: [tokens, hidden], device: ctx.device });

  const t0 = performance.now();
  const pre = deviceMatmul(xDev, w1Shard); // [tokens, shard]
  const hShard = deviceRelu(pre);
  const yPartial = deviceMatmul(hShard, w2Shard); // [tokens, hidden], this rank's partial sum
  const h = await ctx.tp.allGather(hShard, -1);
  const y = await ctx.tp.allReduce(yPartial);
  const hGot = (await h.toArray()) as Float32Array;
  const yGot = (await y.toArray()) as Float32Array;
  const ms = performance.now() - t0;
  const errors: string[] = [];
  if (h.shape.join('x') !== `${tokens}x${ffn}`) errors.push(`all-gather shape ${h.shape.join('x')}`);
  const hBad = firstMismatch(hGot, hRef);
  if (hBad) errors.push(`all-gather: ${hBad}`);
  const yBad = firstMismatch(yGot, yRef);
  if (yBad) errors.push(`all-reduce: ${yBad}`);
  for (const t of [w1Shard, w2Shard, xDev, pre, hShard, yPartial, h, y]) t.dispose();
  return { rank: ctx.rank, tpRank: r, replica, errors, ms, checksum: yGot.reduce((a, b) => a + b, 0) };
}
