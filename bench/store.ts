/**
 * `npm run bench -- store`: store set+get round trip on loopback, and
 * StatelessProcessGroup.broadcastObj of a 1 KiB object at 4 ranks (one process, 4
 * connections).
 */
import { StatelessProcessGroup, TcpStoreClient, TcpStoreServer } from '../src/store/index.ts';
import type { BenchOptions } from './index.ts';
import { percentiles } from './stats.ts';

export async function run(opts: BenchOptions): Promise<void> {
  const server = await TcpStoreServer.listen();
  const clients = await Promise.all([0, 1, 2, 3].map(() => TcpStoreClient.connect({ host: '127.0.0.1', port: server.port })));
  try {
    const value = new Uint8Array(1024);
    const samples: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t0 = performance.now();
      await clients[0].set(`k${i % 16}`, value);
      await clients[0].get(`k${i % 16}`);
      if (i >= 200) samples.push((performance.now() - t0) * 1000);
    }
    const rt = percentiles(samples);
    opts.log(`store set+get 1 KiB: p50 ${rt.p50} us, p99 ${rt.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'store_set_get', world: 1, bytes: 1024, p50_us: rt.p50, p99_us: rt.p99 });

    const groups = clients.map((c, r) => StatelessProcessGroup.fromStore(c.withPrefix('bench'), r, 4));
    const obj = { payload: 'x'.repeat(1000) };
    const bcast: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 0 ? obj : null, 0)));
      if (i >= 50) bcast.push((performance.now() - t0) * 1000);
    }
    const b = percentiles(bcast);
    opts.log(`broadcastObj 1 KiB at 4 ranks: p50 ${b.p50} us, p99 ${b.p99} us`);
    opts.json({ impl: 'gpugroup', op: 'broadcast_obj', world: 4, bytes: 1024, p50_us: b.p50, p99_us: b.p99 });
  } finally {
    clients.forEach((c) => c.close());
    await server.close();
  }
}
