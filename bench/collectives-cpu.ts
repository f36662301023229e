/**
 * The CPU backend's sweep: all_reduce, broadcast, all_gather, reduce_scatter and
 * send_recv of float32, 8 B × 4^k up to maxBytes (default 64 MiB), for 4 thread ranks
 * and 4 process ranks, with nccl-tests' busbw factors, and beside it the yardstick: a
 * plain memcpy (TypedArray.set) of the same bytes in one thread.
 *
 * Records: `{impl:'gpugroup', backend:'cpu', mode, transport, op, world:4, bytes, us, busbw}`
 * (us: the slowest rank's mean time per op) and `{impl:'memcpy', backend:'cpu', op:'memcpy',
 * world:1, bytes, us, busbw}` (busbw: bytes moved per µs).
 */
import { tableHeader, tableLine } from './table.ts';
import { launchGroup } from '../src/orchestrator/index.ts';
import { busFactor, sizes, type CpuSweepArgs, type CpuSweepOp } from './workers/collectives-cpu.ts';

const OPS: CpuSweepOp[] = ['all_reduce', 'broadcast', 'all_gather', 'reduce_scatter', 'send_recv'];
const WORLD = 4;
const worker = new URL('./workers/collectives-cpu.ts', import.meta.url);

/** Options of {@link run}. */
export interface CpuBenchOptions {
  json: (rec: object) => void;
  log: (line: string) => void;
  minBytes?: number;
  maxBytes?: number;
  /** Sweep only these modes (default both). */
  modes?: ('thread' | 'process')[];
  /** Options for a dedicated communicator per run (tuning); default: the group's own. */
  comm?: CpuSweepArgs['comm'];
}

/** Runs the sweep and reports each record through `json` and a readable line through `log`. */
export async function run(opts: CpuBenchOptions): Promise<void> {
  const minBytes = opts.minBytes ?? 8;
  const maxBytes = opts.maxBytes ?? 64 << 20;
  for (const mode of opts.modes ?? (['thread', 'process'] as const)) {
    const group = await launchGroup({ worldSize: WORLD, worker, backend: 'cpu', mode, timeoutMs: 300_000 });
    try {
      type Row = { op: CpuSweepOp; bytes: number; us: number; transport: string };
      const perRank = await group.callAll<Row[]>('sweep', {
        ops: OPS,
        minBytes,
        maxBytes,
        comm: opts.comm,
      } satisfies CpuSweepArgs);
      opts.log(`# ${mode} ranks (${perRank[0][0]?.transport}), world ${WORLD}`);
      opts.log(tableHeader());
      perRank[0].forEach((row, i) => {
        const ranks = row.op === 'send_recv' ? perRank.slice(0, 2) : perRank;
        const us = Math.max(...ranks.map((r) => r[i].us));
        const busbw = (row.bytes / us / 1e3) * busFactor(row.op, WORLD);
        opts.log(
          tableLine({
            op: row.op,
            bytes: row.bytes,
            count: Math.max(1, Math.floor(row.bytes / 4)),
            dtype: 'float',
            us,
            busbw,
          }),
        );
        opts.json({
          impl: 'gpugroup',
          backend: 'cpu',
          mode,
          transport: row.transport,
          op: row.op,
          world: WORLD,
          bytes: row.bytes,
          us: +us.toFixed(2),
          busbw: +busbw.toFixed(3),
        });
      });
    } finally {
      await group.shutdown();
    }
  }
  for (const bytes of sizes(minBytes, maxBytes)) {
    const src = new Uint8Array(bytes).fill(1);
    const dst = new Uint8Array(bytes);
    const iters = bytes >= 1 << 22 ? 20 : 200;
    dst.set(src);
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) dst.set(src);
    const us = ((performance.now() - t0) * 1000) / iters;
    opts.log(
      tableLine({ label: 'memcpy', op: 'memcpy', bytes, count: bytes, dtype: 'uint8', us, busbw: bytes / us / 1e3 }),
    );
    opts.json({
      impl: 'memcpy',
      backend: 'cpu',
      op: 'memcpy',
      world: 1,
      bytes,
      us: +us.toFixed(3),
      busbw: +(bytes / us / 1e3).toFixed(3),
    });
  }
}
