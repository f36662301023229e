/**
 * Tensor parallelism: an MLP block split Megatron-style over the TP group.
 *
 *   npx tsx examples/tensor-parallel.ts [--backend cpu|nccl] [--tp 2|4]
 *
 * 4 ranks (TP=2 × DP=2 by default; --tp 4 for one TP group of 4). Each rank holds a
 * column shard of W1 and a row shard of W2; the hidden activations are all-gathered
 * (column-parallel output) and the partial outputs all-reduced (row-parallel), and
 * every rank checks both against the unsplit block. Default backend: nccl when 4 GPUs
 * are visible (or as many as --tp), else cpu. Exits 0 when every rank matched.
 */
import { cudaDeviceCount, launchGroup, ncclAvailable } from 'gpugroup';
import type { forward } from './workers/tensor-parallel-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/tensor-parallel.ts [--backend cpu|nccl] [--tp 2|4]

An MLP block split Megatron-style over the TP group, checked against the unsplit block.

  --backend cpu|nccl  default: nccl when 4 GPUs (or as many as --tp) are visible, else cpu
  --tp 2|4            tensor-parallel size (default 2)
  -h, --help          show this text`;

const values = commandLine('tensor-parallel', USAGE, {
  backend: { type: 'string' },
  tp: { type: 'string', default: '2' },
});
const gpus = cudaDeviceCount();
const tp = Number(values.tp);
const backend = (values.backend ?? (gpus >= tp && gpus >= 2 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
// 4 ranks (two TP groups at --tp 2, so that the DP replicas differ); fewer GPUs: one TP group.
const worldSize = backend === 'nccl' && gpus < 4 ? tp : 4;
const usage =
  tp !== 2 && tp !== 4
    ? `--tp must be 2 or 4, got ${values.tp}`
    : backend !== 'cpu' && backend !== 'nccl'
      ? `--backend must be cpu or nccl, got ${String(backend)}`
      : backend === 'nccl' && gpus < tp
        ? `--backend nccl with --tp ${tp} needs ${tp} GPUs, ${gpus} visible`
        : null;
if (usage) {
  console.error(`tensor-parallel: ${usage}`);
  process.exit(2);
}

const shape = { tokens: 16, hidden: 64, ffn: 256 };
const group = await launchGroup({
  worldSize,
  tensorParallelSize: tp,
  worker: new URL('./workers/tensor-parallel-worker.ts', import.meta.url),
  backend,
  timeoutMs: 60_000,
});
let ok = false;
try {
  const results = await group.callAll<Awaited<ReturnType<typeof forward>>>('forward', shape);
  const errors = results.flatMap((r) =>
    r.errors.map((e) => `rank ${r.rank} (tp ${r.tpRank}, replica ${r.replica}): ${e}`),
  );
  // Replicas see different batches: their outputs must differ, TP peers' must agree.
  const byReplica = new Map(results.map((r) => [r.replica, r.checksum]));
  if (results.some((r) => r.checksum !== byReplica.get(r.replica))) errors.push('TP peers disagree on the output');
  if (byReplica.size !== worldSize / tp)
    errors.push(`expected ${worldSize / tp} distinct replica outputs, got ${byReplica.size}`);
  if (errors.length > 0) {
    console.error(`tensor-parallel: FAILED (${backend}):\n  ${errors.join('\n  ')}`);
  } else {
    const ms = Math.max(...results.map((r) => r.ms));
    console.log(
      `tensor-parallel: MLP [${shape.tokens}×${shape.hidden}] → ${shape.ffn} → ${shape.hidden} split over TP=${tp} × ` +
        `DP=${worldSize / tp} on ${backend}: ` +
        `all-gather and all-reduce match the unsplit block on all ${worldSize} ranks (${ms.toFixed(2)} ms)`,
    );
    ok = true;
  }
} finally {
  await group.shutdown();
}
process.exitCode = ok ? 0 : 1;
