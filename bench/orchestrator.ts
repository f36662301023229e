/**
 * `npm run bench -- orchestrator`: launch-to-ready of 4 ranks in each mode (spawn,
 * store connection, world group and communicator built), and the call round trip.
 */
import { launchGroup } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './options.ts';
import { percentiles } from './stats.ts';

const worker = new URL('../test/fixtures/basic-worker.ts', import.meta.url);

export async function run(opts: BenchOptions): Promise<void> {
  const world = opts.world ?? 4;
  const backend = opts.backend ?? 'cpu';
  for (const mode of ['thread', 'process'] as const) {
    const launches: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const group = await launchGroup({ worldSize: world, worker, mode, backend, timeoutMs: 120_000 });
      launches.push(performance.now() - t0);
      if (i < 4) await group.shutdown();
      else {
        const samples: number[] = [];
        for (let j = 0; j < 2000; j++) {
          const c0 = performance.now();
          await group.call(0, 'echo');
          if (j >= 200) samples.push((performance.now() - c0) * 1000);
        }
        const rt = percentiles(samples);
        opts.log(`${mode}: call round trip p50 ${rt.p50} us, p99 ${rt.p99} us`);
        opts.json({ impl: 'gpugroup', op: 'call_round_trip', world, mode, backend, p50_us: rt.p50, p99_us: rt.p99 });
        await group.shutdown();
      }
    }
    const s = launches.sort((a, b) => a - b)[2] / 1000;
    opts.log(`${mode}: launch to ready (${world} ranks, ${backend}) median of 5: ${s.toFixed(3)} s`);
    opts.json({ impl: 'gpugroup', op: 'launch_to_ready', world, mode, backend, s: +s.toFixed(3) });
  }
}
