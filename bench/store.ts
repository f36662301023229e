/**
 * `npm run bench -- store`: the rendezvous layer on loopback.
 * - store_set_get: one client, set of a 1 KiB value then get of it (two round trips).
 * - broadcast_obj: StatelessProcessGroup.broadcastObj of a 1 KiB object at 4 ranks
 *   (one process, 4 connections), from the call until every rank has it.
 * - all_gather_obj and barrier at 4 ranks, for context.
 */
import { StatelessProcessGroup, TcpStoreClient, TcpStoreServer } from '../src/store/index.ts';
import { percentiles } from './stats.ts';

/** What the bench runner passes (a subset of BenchOptions in ./index.ts). */
interface StoreBenchOptions {
  json: (rec: Record<string, unknown>) => void;
  log: (line: string) => void;
}

const WORLD = 4;
const BYTES = 1024;

/** Runs the store suite, emitting one JSON record per measurement. */
export async function run(opts: StoreBenchOptions): Promise<void> {
  const server = await TcpStoreServer.listen();
  const clients = await Promise.all(
    Array.from({ length: WORLD }, () => TcpStoreClient.connect({ host: '127.0.0.1', port: server.port })),
  );
  try {
    const value = new Uint8Array(BYTES).fill(7);
    const rt = await sample(5_000, 500, async (i) => {
      const key = `k${i & 15}`;
      await clients[0].set(key, value);
      await clients[0].get(key);
    });
    opts.log(`store set+get ${BYTES} B: p50 ${rt.p50} us, p99 ${rt.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'store_set_get', world: 1, bytes: BYTES, p50_us: rt.p50, p99_us: rt.p99 });

    const groups = clients.map((c, r) =>
      StatelessProcessGroup.fromStore(c.withPrefix('bench'), r, WORLD, { storeTimeoutMs: 30_000 }),
    );
    const obj = { payload: new Uint8Array(BYTES).fill(1) };
    const b = await sample(2_000, 200, async () => {
      await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 0 ? obj : null, 0)));
    });
    opts.log(`broadcastObj ${BYTES} B at ${WORLD} ranks: p50 ${b.p50} us, p99 ${b.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'broadcast_obj', world: WORLD, bytes: BYTES, p50_us: b.p50, p99_us: b.p99 });

    const g = await sample(1_000, 100, async () => {
      await Promise.all(groups.map((grp) => grp.allGatherObj(obj)));
    });
    opts.log(`allGatherObj ${BYTES} B at ${WORLD} ranks: p50 ${g.p50} us, p99 ${g.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'all_gather_obj', world: WORLD, bytes: BYTES, p50_us: g.p50, p99_us: g.p99 });

    const bar = await sample(1_000, 100, async () => {
      await Promise.all(groups.map((grp) => grp.barrier()));
    });
    opts.log(`barrier at ${WORLD} ranks: p50 ${bar.p50} us, p99 ${bar.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'store_barrier', world: WORLD, bytes: 0, p50_us: bar.p50, p99_us: bar.p99 });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  }
}

/** Times `iters` runs of `fn` after `warmup` untimed ones; percentiles in microseconds. */
async function sample(iters: number, warmup: number, fn: (i: number) => Promise<void>) {
  const samples: number[] = [];
  for (let i = 0; i < warmup + iters; i++) {
    const t0 = performance.now();
    await fn(i);
    if (i >= warmup) samples.push((performance.now() - t0) * 1000);
  }
  return percentiles(samples);
}
