/**
 * `npm run bench -- collectives`: the NCCL sweep (all_reduce, broadcast, all_gather,
 * reduce_scatter, send_recv; 8 B × 4^k up to --max-bytes) through gpugroup in one
 * launchGroup of --world ranks (default: every visible GPU), plus the host cost of one
 * allReduce call beside the raw koffi call. Compare with nccl-tests from the same run:
 * node ../shared/baselines/compare.mjs baselines.jsonl ours.jsonl
 */
import { cudaDeviceCount, nccl } from '../native/index.ts';
import { launchGroup } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './index.ts';
import type { SweepOp } from './workers/collectives.ts';

const OPS: SweepOp[] = ['all_reduce', 'broadcast', 'all_gather', 'reduce_scatter', 'send_recv'];
const worker = new URL('./workers/collectives.ts', import.meta.url);

/** The CPU backend's sweep at 4 thread and 4 process ranks, beside a plain memcpy of the same bytes. */
async function runCpu(opts: BenchOptions): Promise<void> {
  const world = opts.world ?? 4;
  const maxBytes = opts.maxBytes ?? 64 << 20;
  for (const mode of ['thread', 'process'] as const) {
    const group = await launchGroup({ worldSize: world, worker, backend: 'cpu', mode, timeoutMs: 300_000 });
    try {
      const results = (await group.callAll('sweep', { ops: OPS, minBytes: opts.minBytes ?? 8, maxBytes })) as Record<string, unknown>[][];
      for (const rec of results.flat()) {
        opts.log(`${mode.padStart(8)} ${String(rec.bytes).padStart(10)} ${String(rec.op).padStart(14)} ${String(rec.us).padStart(10)} us ${String(rec.busbw).padStart(8)} GB/s`);
        opts.json({ ...rec, mode });
      }
    } finally {
      await group.shutdown();
    }
  }
  for (let bytes = opts.minBytes ?? 8; bytes <= maxBytes; bytes *= 4) {
    const src = new Uint8Array(bytes).fill(1);
    const dst = new Uint8Array(bytes);
    const iters = bytes >= 1 << 22 ? 20 : 200;
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) dst.set(src);
    const us = ((performance.now() - t0) * 1000) / iters;
    opts.log(`  memcpy ${String(bytes).padStart(10)} ${us.toFixed(2).padStart(10)} us ${(bytes / us / 1e3).toFixed(2).padStart(8)} GB/s`);
    opts.json({ impl: 'memcpy', op: 'memcpy', world: 1, bytes, us: +us.toFixed(2), busbw: +(bytes / us / 1e3).toFixed(2) });
  }
}

export async function run(opts: BenchOptions): Promise<void> {
  const gpus = cudaDeviceCount();
  const backend = opts.backend ?? (gpus > 0 ? 'nccl' : 'cpu');
  if (backend === 'cpu') return runCpu(opts);
  const world = opts.world ?? gpus;
  if (world < 1 || gpus < world) {
    opts.log(`collectives: the NCCL sweep needs ${Math.max(world, 1)} GPUs, ${gpus} visible; skipped`);
    return;
  }
  opts.log(`collectives: NCCL ${nccl().version} from ${nccl().path}, world ${world}`);
  const group = await launchGroup({ worldSize: world, worker, backend: 'nccl', mode: 'process', timeoutMs: 300_000 });
  try {
    const results = await group.callAll('sweep', { ops: OPS, minBytes: opts.minBytes ?? 8, maxBytes: opts.maxBytes ?? 1 << 30 });
    opts.log('#       size         op      time(us)   busbw(GB/s)');
    for (const rec of (results as Record<string, unknown>[][]).flat()) {
      opts.log(`${String(rec.bytes).padStart(12)} ${String(rec.op).padStart(14)} ${String(rec.us).padStart(12)} ${String(rec.busbw).padStart(12)}`);
      opts.json(rec);
    }
    const [cost] = (await group.callAll('hostCost', { iters: 2000 })) as ({ raw: number; gpugroup: number } | null)[];
    if (cost) {
      opts.log(`host cost per allReduce call: gpugroup ${cost.gpugroup.toFixed(2)} us, raw koffi ncclAllReduce ${cost.raw.toFixed(2)} us`);
      opts.json({ impl: 'gpugroup', op: 'all_reduce_host_cost', world, us: +cost.gpugroup.toFixed(3) });
      opts.json({ impl: 'raw-koffi', op: 'all_reduce_host_cost', world, us: +cost.raw.toFixed(3) });
    }
  } finally {
    await group.shutdown();
  }
}
