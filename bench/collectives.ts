/**
 * `npm run bench -- collectives`: the NCCL sweep (all_reduce, broadcast, all_gather,
 * reduce_scatter, send_recv; 8 B × 4^k up to --max-bytes) through gpugroup in one
 * launchGroup of --world ranks (default: every visible GPU), timed as nccl-tests times
 * it, plus the host cost of one allReduce call beside the raw koffi call. `--world 1`
 * runs the op path on a one-rank NCCL communicator (where vLLM's GroupCoordinator
 * would return the input), adds graph-captured all-reduce (nccl-tests -G's method) and,
 * up to 64 KiB, the same loops of raw koffi NCCL calls in the same rank (impl
 * `raw-koffi`), and compares with `all_reduce_perf -t 1 -g 1` and torch at world 1.
 * Compare with the baselines from the same run: both write JSON lines joined on op,
 * world and bytes.
 */
import { cudaDeviceCount, nccl } from '../native/index.ts';
import { launchGroup } from '../src/orchestrator/index.ts';
import { tableHeader, tableLine } from './table.ts';
import type { BenchOptions } from './options.ts';
import type { SweepOp } from './workers/collectives.ts';

const OPS: SweepOp[] = ['all_reduce', 'broadcast', 'all_gather', 'reduce_scatter', 'send_recv'];
const worker = new URL('./workers/collectives.ts', import.meta.url);

export async function run(opts: BenchOptions): Promise<void> {
  const gpus = cudaDeviceCount();
  if (opts.backend === 'cpu') {
    opts.log('collectives: the CPU backend has its own suite: npm run bench -- collectives-cpu');
    return;
  }
  const world = opts.world ?? gpus;
  if (opts.shareDevices) return hostCostRehearsal(opts, world);
  if (world < 1 || gpus < world) {
    opts.log(`collectives: the NCCL sweep needs ${Math.max(world, 1)} GPUs, ${gpus} visible; skipped`);
    return;
  }
  opts.log(`collectives: NCCL ${nccl().version} from ${nccl().path}, world ${world}, ${opts.mode ?? 'process'} ranks`);
  const group = await launchGroup({
    worldSize: world,
    worker,
    backend: 'nccl',
    mode: opts.mode ?? 'process',
    timeoutMs: 300_000,
  });
  try {
    const results = await group.callAll('sweep', {
      ops: world === 1 ? OPS.filter((op) => op !== 'send_recv') : OPS,
      minBytes: opts.minBytes ?? 8,
      maxBytes: opts.maxBytes ?? 1 << 30,
    });
    const records = (results as SweepRecord[][]).flat();
    // gpugroup's ops, then (world 1) the same loops of raw koffi NCCL calls in the same rank.
    logTable(
      opts,
      records.filter((rec) => rec.impl === 'gpugroup'),
    );
    const raw = records.filter((rec) => rec.impl === 'raw-koffi');
    if (raw.length > 0) {
      opts.log('# the same loops of raw koffi NCCL calls on preallocated buffers, same rank');
      logTable(opts, raw);
    }
    if (world === 1) {
      // The graphs suite covers world >= 2 (through the world group, which has no
      // communicator at world size 1).
      const [graphRecords] = (await group.callAll('graphSweep', { maxBytes: opts.maxBytes })) as SweepRecord[][];
      opts.log('# graph-captured all_reduce (100 per graph, 20 launches)');
      logTable(opts, graphRecords);
    }
    await reportHostCost(opts, world, group.callAll('hostCost', { iters: 6400, batch: 64, rounds: 3 }), {});
  } finally {
    await group.shutdown();
  }
}

/** A rank's record of one op at one size (bench/workers/collectives.ts). */
interface SweepRecord {
  impl: string;
  op: string;
  bytes: number;
  us: number;
  busbw: number;
}

/** `records` as an nccl-tests table on the log, and each as a JSON line. */
function logTable(opts: BenchOptions, records: SweepRecord[]): void {
  opts.log(tableHeader());
  for (const rec of records) {
    const count = Math.max(1, Math.floor(rec.bytes / 4));
    opts.log(tableLine({ op: rec.op, bytes: rec.bytes, count, dtype: 'float', us: rec.us, busbw: rec.busbw }));
    opts.json({ ...rec, mode: opts.mode ?? 'process' });
  }
}

type HostCost = { raw: number; gpugroup: number; allocFree: number } | null;

async function reportHostCost(
  opts: BenchOptions,
  world: number,
  pending: Promise<unknown[]>,
  extra: object,
): Promise<void> {
  const [cost] = (await pending) as HostCost[];
  if (!cost) return;
  opts.log(
    `host cost per allReduce call: gpugroup ${cost.gpugroup.toFixed(2)} us, raw koffi ncclAllReduce ` +
      `${cost.raw.toFixed(2)} us (+${(cost.gpugroup - cost.raw).toFixed(2)}); output alloc+free ${cost.allocFree.toFixed(2)} us`,
  );
  opts.json({ impl: 'gpugroup', op: 'all_reduce_host_cost', world, us: +cost.gpugroup.toFixed(3), ...extra });
  opts.json({ impl: 'raw-koffi', op: 'all_reduce_host_cost', world, us: +cost.raw.toFixed(3), ...extra });
  opts.json({ impl: 'gpugroup', op: 'device_alloc_free_host_cost', world, us: +cost.allocFree.toFixed(3), ...extra });
}

/**
 * `--share-devices`: the ranks share GPU 0 (launchGroup's shareDevices, NCCL's socket
 * transport), so device timings mean nothing and the sweep is skipped; what stays
 * meaningful is the host's enqueue cost, ours beside the raw call in the same process.
 */
async function hostCostRehearsal(opts: BenchOptions, world: number): Promise<void> {
  opts.log(
    `collectives: ${world} ranks sharing GPU 0 (a rehearsal): the sweep is skipped; host cost only. NCCL ` +
      `${nccl().version} from ${nccl().path}`,
  );
  const group = await launchGroup({
    worldSize: world,
    worker,
    backend: 'nccl',
    mode: 'process',
    timeoutMs: 300_000,
    devices: Array<number>(world).fill(0),
    shareDevices: true,
  });
  try {
    await reportHostCost(opts, world, group.callAll('hostCost', { iters: 640, batch: 32, rounds: 5 }), {
      shared_gpu: true,
    });
  } finally {
    await group.shutdown();
  }
}
