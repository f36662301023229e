/**
 * `npm run bench -- copies`: on one GPU, the host cost of what packing a tensor dict's
 * small tensors takes: n byte copies of 4 KiB, one cudaMemcpyAsync each, beside one
 * cuMemcpyBatchAsync_v2 (CUDA 13 drivers) doing the same n copies; n Tensor.full (the
 * dict the bench builds) and a packed allocation of n pieces (a receiver's). Median µs
 * per batch of n over 2000 batches, the stream drained every 32 (untimed). The batch
 * copies (copyBytesInto, what the source of a packed dict runs) are read back into a
 * zeroed buffer and checked before anything is timed.
 */
import { cudaDeviceCount, cudaDriver } from '../native/index.ts';
import { Tensor, copyBytes, copyBytesInto, currentStream, emptyPacked, packedLayout, setDevice } from '../src/tensor/index.ts';
import type { BenchOptions } from './index.ts';

const BYTES = 4096;

export async function run(opts: BenchOptions): Promise<void> {
  if (cudaDeviceCount() < 1) {
    opts.log('copies: needs a GPU; skipped');
    return;
  }
  setDevice(0);
  const stream = currentStream();
  const driver = cudaDriver();
  for (const n of [1, 8, 32]) {
    const srcs = Array.from({ length: n }, (_, i) => Tensor.full([BYTES / 4], i + 1, { dtype: 'float32', device: 'cuda:0' }));
    const { offsets, totalBytes } = packedLayout(srcs.map((t) => ({ shape: t.shape, dtype: t.dtype })));
    let dst = Tensor.empty([totalBytes], { dtype: 'uint8', device: 'cuda:0' });
    const batch = driver?.cuMemcpyBatchAsync_v2;
    const parts: Record<string, () => void> = {
      memcpyEach: () => srcs.forEach((t, i) => copyBytes(dst, offsets[i], t, 0, BYTES)),
      full: () => {
        for (let i = 0; i < n; i++) Tensor.full([BYTES / 4], i, { dtype: 'float32', device: 'cuda:0' }).dispose();
      },
      packedAlloc: () => {
        const p = emptyPacked(srcs.map((t) => ({ shape: t.shape, dtype: t.dtype })), 'cuda:0')!;
        p.buffer.dispose();
        for (const t of p.tensors) t.dispose();
      },
    };
    if (batch) {
      // copyBytesInto: the staging copy of broadcastTensorDict's source (one batched call).
      parts.memcpyBatch = () => copyBytesInto(dst, offsets, srcs);
      dst.dispose();
      dst = Tensor.zeros([totalBytes], { dtype: 'uint8', device: 'cuda:0' });
      parts.memcpyBatch();
      const back = (await dst.toArray()) as Uint8Array;
      const ok = offsets.every((o, i) => new Float32Array(back.buffer.slice(o, o + BYTES)).every((v) => v === i + 1));
      opts.log(`copies: copyBytesInto (cuMemcpyBatchAsync_v2) of ${n} × 4 KiB ${ok ? 'copied every byte right' : 'copied WRONG bytes'}`);
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
