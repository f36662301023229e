/**
 * `npm run bench -- safetensors [--max-bytes N]`: on one GPU, loading a safetensors file
 * of N bytes (default 4 GiB: 32 bfloat16 tensors of [8192, 8192] for 4 GiB) onto cuda:0
 * with loadSafetensors, the clock stopped once the stream has drained. The file is
 * written once by saveSafetensors from device tensors (its rate is reported too) at
 * GPUGROUP_BENCH_SAFETENSORS_FILE (default: the OS temp dir) and kept for the baseline
 * (bench/baselines/torch_safetensors.py, torch's `safetensors.torch.load_file(device=
 * 'cuda:0')` on the same file). One untimed load first warms the page cache, as for the
 * baseline, and one per host-buffer size (the loader keeps its page-locked ring between
 * loads); then 3 timed loads per host-buffer size. Records: impl, op, bytes, s, GBps.
 */
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cudaDeviceCount } from '../native/index.ts';
import { currentStream, loadSafetensors, saveSafetensors, setDevice, Tensor } from '../src/tensor/index.ts';
import type { BenchOptions } from './options.ts';

const TENSOR_BYTES = 8192 * 8192 * 2;

export async function run(opts: BenchOptions): Promise<void> {
  if (cudaDeviceCount() < 1) {
    opts.log('safetensors: needs a GPU; skipped');
    return;
  }
  setDevice(0);
  const stream = currentStream();
  const count = Math.max(1, Math.round((opts.maxBytes ?? 4 * 2 ** 30) / TENSOR_BYTES));
  const bytes = count * TENSOR_BYTES;
  const path =
    process.env.GPUGROUP_BENCH_SAFETENSORS_FILE ?? join(tmpdir(), `gpugroup-bench-${count}x128MiB.safetensors`);
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {}
  if (size < bytes) {
    const tensors = new Map<string, Tensor>();
    for (let k = 0; k < count; k++)
      tensors.set(`layers.${k}.weight`, Tensor.full([8192, 8192], k % 64, { dtype: 'bfloat16', device: 'cuda:0' }));
    const t0 = performance.now();
    await saveSafetensors(path, tensors);
    const s = (performance.now() - t0) / 1000;
    for (const t of tensors.values()) t.dispose();
    opts.log(`safetensors: wrote ${path} (${(bytes / 2 ** 30).toFixed(2)} GiB) in ${s.toFixed(2)} s`);
    opts.json({
      impl: 'gpugroup',
      op: 'safetensors_save',
      bytes,
      s: +s.toFixed(4),
      GBps: +(bytes / s / 1e9).toFixed(3),
    });
  }
  const load = async (bufferBytes?: number) => {
    const t0 = performance.now();
    const loaded = await loadSafetensors(path, { device: 'cuda:0', bufferBytes });
    await stream.synchronize(120_000);
    const s = (performance.now() - t0) / 1000;
    return { loaded, s };
  };
  const warm = await load();
  const probe = warm.loaded.get(`layers.${count - 1}.weight`)!.narrow(0, 8191, 1);
  const last = (await probe.toArray()) as Float32Array;
  const right = last.every((v) => v === (count - 1) % 64);
  opts.log(`safetensors: warm-up load ${warm.s.toFixed(2)} s; values ${right ? 'right' : 'WRONG'}`);
  for (const t of warm.loaded.values()) t.dispose();
  if (!right) process.exitCode = 1;
  for (const bufferBytes of [16 << 20, 64 << 20]) {
    // Untimed: the loader keeps its page-locked ring between loads of one buffer size.
    for (const t of (await load(bufferBytes)).loaded.values()) t.dispose();
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { loaded, s } = await load(bufferBytes);
      for (const t of loaded.values()) t.dispose();
      await stream.synchronize(120_000);
      times.push(s);
      opts.json({
        impl: 'gpugroup',
        op: 'safetensors_load',
        bytes,
        buffer_bytes: bufferBytes,
        s: +s.toFixed(4),
        GBps: +(bytes / s / 1e9).toFixed(3),
      });
    }
    times.sort((a, b) => a - b);
    opts.log(
      `safetensors: load ${(bytes / 2 ** 30).toFixed(2)} GiB through ${bufferBytes >> 20} MiB buffers: median ${times[1].toFixed(3)} s, ${(bytes / times[1] / 1e9).toFixed(2)} GB/s`,
    );
  }
}
