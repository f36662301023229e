/**
 * `npm run bench -- graphs`: latency of graph-captured all-reduce (op `all_reduce`,
 * `graph: true`) at the sizes nccl-tests -G and the torch baseline use.
 */
import { cudaDeviceCount } from '../native/index.ts';
import { launchGroup } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './options.ts';
import { tableHeader, tableLine } from './table.ts';

const SIZES = [8, 32, 128, 512, 1024, 2048, 8192, 32768, 65536, 131072, 524288, 1048576];

export async function run(opts: BenchOptions): Promise<void> {
  const gpus = cudaDeviceCount();
  const world = opts.world ?? gpus;
  if (world < 2 || gpus < world) {
    opts.log(
      `graphs: needs ${Math.max(world, 2)} GPUs, ${gpus} visible; skipped (on one GPU, \`collectives --world 1\` times a graph-captured all-reduce on a one-rank communicator)`,
    );
    return;
  }
  const group = await launchGroup({
    worldSize: world,
    worker: new URL('./workers/graphs.ts', import.meta.url),
    backend: 'nccl',
    timeoutMs: 120_000,
  });
  try {
    const [records] = await group.callAll<{ bytes: number; us: number }[]>('graphSweep', { sizes: SIZES });
    opts.log('# graph-captured all_reduce (100 per graph, 10 replays)');
    opts.log(tableHeader());
    for (const rec of records) {
      const busbw = (rec.bytes / rec.us / 1e3) * ((2 * (world - 1)) / world);
      opts.log(
        tableLine({
          op: 'all_reduce',
          bytes: rec.bytes,
          count: Math.max(1, Math.floor(rec.bytes / 4)),
          dtype: 'float',
          us: rec.us,
          busbw,
        }),
      );
      opts.json(rec);
    }
  } finally {
    await group.shutdown();
  }
}
