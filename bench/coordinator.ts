/**
 * `npm run bench -- coordinator`: broadcastTensorDict of 1, 8 and 32 device tensors of
 * 4 KiB plus a scalar (op `broadcast_tensor_dict`, p50 over 200 iterations after 50
 * untimed ones, on the last rank as the torch baseline reports it).
 */
import { cudaDeviceCount } from '../native/index.ts';
import { launchGroup, type Group } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './options.ts';

export async function run(opts: BenchOptions): Promise<void> {
  const backend = opts.backend ?? (cudaDeviceCount() > 0 ? 'nccl' : 'cpu');
  const world = opts.world ?? (backend === 'nccl' ? cudaDeviceCount() : 4);
  const placement = opts.shareDevices ? { devices: Array<number>(world).fill(0), shareDevices: true } : {};
  const group = await launchGroup({
    worldSize: world,
    worker: new URL('./workers/coordinator.ts', import.meta.url),
    backend,
    mode: opts.mode ?? 'process',
    timeoutMs: 120_000,
    ...placement,
  });
  try {
    if (opts.shareDevices) {
      // Ranks sharing a GPU (a rehearsal): latencies mean nothing, each side's host work does.
      opts.log(`coordinator: ${world} ranks sharing GPU 0: host work only`);
      for (const tensors of [1, 8, 32]) await logHostParts(opts, group, tensors);
      return;
    }
    for (const tensors of [1, 8, 32]) {
      const out = await group.callAll<{ p50: number; min: number; issuedP50: number }>('broadcastTensorDict', {
        tensors,
        iters: 200,
        warmup: 50,
      });
      const last = out[world - 1];
      opts.log(
        `broadcastTensorDict ${tensors} × 4 KiB (${backend}, world ${world}): p50 ${last.p50.toFixed(1)} us, min ` +
          `${last.min.toFixed(1)} us; ` +
          `until enqueued p50: ${out.map((o) => o.issuedP50.toFixed(1)).join(' / ')} us (ranks 0..${world - 1})`,
      );
      opts.json({
        impl: 'gpugroup',
        op: 'broadcast_tensor_dict',
        world,
        backend,
        tensors,
        tensor_bytes: 4096,
        p50_us: +last.p50.toFixed(1),
        min_us: +last.min.toFixed(1),
      });
    }
    if (process.env.GPUGROUP_BENCH_PROFILE === '1') {
      for (const tensors of [1, 8]) {
        const parts = await group.callAll<Record<string, number>>('profile', { tensors, iters: 200 });
        for (const [r, p] of parts.entries())
          opts.log(
            `  profile ${tensors} tensors, rank ${r}: ${Object.entries(p)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')} (us)`,
          );
        const steps = await group.callAll<Record<string, number>>('profileSteps', { tensors, iters: 200 });
        for (const [r, p] of steps.entries())
          opts.log(
            `  steps ${tensors} tensors, rank ${r}: ${Object.entries(p)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')} (us from the barrier)`,
          );
        const real = await group.callAll<Record<string, number>>('profileReal', { tensors, iters: 200 });
        for (const [r, p] of real.entries())
          opts.log(
            `  real ${tensors} tensors, rank ${r}: ${Object.entries(p)
              .map(([k, v]) => `${k} ${v}`)
              .join(', ')} (us from the barrier)`,
          );
        await logHostParts(opts, group, tensors);
      }
    }
  } finally {
    await group.shutdown();
  }
}

async function logHostParts(opts: BenchOptions, group: Group, tensors: number): Promise<void> {
  const host = await group.callAll<Record<string, number>>('hostParts', { tensors, iters: 400 });
  host.forEach((p, r) => {
    opts.log(
      `  host work ${tensors} tensors, rank ${r}: ${Object.entries(p)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')} (us, median)`,
    );
    opts.json({
      impl: 'gpugroup',
      op: 'broadcast_tensor_dict_host_work',
      rank: r,
      tensors,
      shared_gpu: opts.shareDevices ?? false,
      ...p,
    });
  });
}
