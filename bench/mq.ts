/**
 * `npm run bench -- mq`: the shared-memory MessageQueue on this host, 1 writer → 3
 * readers, threads (SharedArrayBuffer ring) and processes (/dev/shm ring): round trip
 * latency of a small message (op `mq_round_trip`, p50_us) and throughput of 4 KiB and
 * 1 MiB messages (op `mq_throughput`, MB/s delivered to each reader).
 */
import { launchGroup } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './options.ts';

export async function run(opts: BenchOptions): Promise<void> {
  const world = opts.world ?? 4;
  if (world < 2) {
    opts.log(`mq: needs a writer and at least one reader (--world >= 2), got ${world}; skipped`);
    return;
  }
  for (const mode of ['thread', 'process'] as const) {
    const group = await launchGroup({
      worldSize: world,
      worker: new URL('./workers/mq.ts', import.meta.url),
      backend: 'cpu',
      mode,
      timeoutMs: 120_000,
    });
    try {
      for (const bytes of [64, 4096]) {
        const [rt] = await group.callAll<{ p50: number; p99: number; min: number } | null>('roundTrip', {
          iters: 2000,
          bytes,
        });
        opts.log(
          `mq round trip ${bytes} B (${mode}, 1 → ${world - 1}): p50 ${rt!.p50} us, p99 ${rt!.p99} us, min ${rt!.min} us`,
        );
        opts.json({
          impl: 'gpugroup',
          op: 'mq_round_trip',
          world,
          mode,
          bytes,
          p50_us: rt!.p50,
          p99_us: rt!.p99,
          min_us: rt!.min,
        });
      }
      for (const [bytes, count] of [
        [4096, 20_000],
        [1 << 20, 300],
      ] as const) {
        const [t] = await group.callAll<{ s: number; MBps: number }>('throughput', { count, bytes });
        opts.log(
          `mq throughput ${bytes} B × ${count} (${mode}, 1 → ${world - 1}): ${t.MBps.toFixed(0)} MB/s per reader ` +
            `(${(count / t.s).toFixed(0)} msg/s)`,
        );
        opts.json({
          impl: 'gpugroup',
          op: 'mq_throughput',
          world,
          mode,
          bytes,
          count,
          s: +t.s.toFixed(4),
          MBps: +t.MBps.toFixed(1),
        });
      }
    } finally {
      await group.shutdown();
    }
  }
}
