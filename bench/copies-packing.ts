/**
 * Part of `npm run bench -- copies` (./copies.ts): on one GPU, the host cost of packing small device tensors
 * into one buffer (what broadcastTensorDict would pay at its source to send a dict's
 * tensors as one broadcast): n byte copies of 4 KiB, one cudaMemcpyAsync each, beside
 * one cuMemcpyBatchAsync_v2 (CUDA 13 drivers) doing the same n copies, and n
 * Tensor.full (the dict the coordinator bench builds). Median µs per batch of n over
 * 2000 batches, the stream drained every 32 (untimed). The batch call's copies are read
 * back from a zeroed buffer and checked before anything is timed.
 */
import { cudaDriver } from '../native/index.ts';
import { Tensor, copyBytes, currentStream, packedLayout } from '../src/tensor/index.ts';
import type { BenchOptions } from './options.ts';

const BYTES = 4096;

/** Runs the packing measurements (the caller has set the device). */
export async function runPacking(opts: BenchOptions): Promise<void> {
  const stream = currentStream();
  const driver = cudaDriver();
  for (const n of [1, 8, 32]) {
    const srcs = Array.from({ length: n }, (_, i) =>
      Tensor.full([BYTES / 4], i + 1, { dtype: 'float32', device: 'cuda:0' }),
    );
    const { offsets, totalBytes } = packedLayout(srcs.map((t) => ({ shape: t.shape, dtype: t.dtype })));
    const dst = Tensor.zeros([totalBytes], { dtype: 'uint8', device: 'cuda:0' });
    const batch = driver?.cuMemcpyBatchAsync_v2;
    const parts: Record<string, () => void> = {
      memcpyEach: () => {
        for (const [i, t] of srcs.entries()) copyBytes(dst, offsets[i], t, 0, BYTES);
      },
      full: () => {
        for (let i = 0; i < n; i++) Tensor.full([BYTES / 4], i, { dtype: 'float32', device: 'cuda:0' }).dispose();
      },
    };
    if (batch) {
      const dsts = BigUint64Array.from(offsets, (o) => dst.dataPtr + BigInt(o));
      const from = BigUint64Array.from(srcs, (t) => t.dataPtr);
      const sizes = BigUint64Array.from(srcs, () => BigInt(BYTES));
      // One CUmemcpyAttributes: source read in stream order (1), location hints on device 0, flags 0.
      const attrs = Int32Array.from([1, 1, 0, 1, 0, 0]);
      const firstAttr = BigUint64Array.from([0n]);
      parts.memcpyBatch = () => void batch(dsts, from, sizes, n, attrs, firstAttr, 1, stream.handle);
      parts.memcpyBatch();
      const back = (await dst.toArray()) as Uint8Array;
      const ok = offsets.every((o, i) => new Float32Array(back.buffer.slice(o, o + BYTES)).every((v) => v === i + 1));
      opts.log(
        `copies: cuMemcpyBatchAsync_v2 of ${n} × 4 KiB ${ok ? 'copied every byte right' : 'copied WRONG bytes'}`,
      );
      if (!ok) delete parts.memcpyBatch;
    } else {
      opts.log('copies: cuMemcpyBatchAsync_v2 is not in this driver');
    }
    for (const [name, body] of Object.entries(parts)) {
      const xs: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const t0 = performance.now();
        body();
        xs.push((performance.now() - t0) * 1000);
        if (i % 32 === 31) await stream.synchronize(10_000);
      }
      await stream.synchronize(10_000);
      xs.sort((a, b) => a - b);
      const us = +xs[xs.length >> 1].toFixed(2);
      opts.log(`copies: ${name} × ${n}: ${us} us per batch (median)`);
      opts.json({ impl: 'gpugroup', op: `host_${name}`, tensors: n, bytes: BYTES, us });
    }
    for (const t of srcs) t.dispose();
    dst.dispose();
  }
}
