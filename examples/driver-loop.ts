/**
 * The driver loop: one driver rank broadcasts every step's inputs to the others.
 *
 *   npx tsx examples/driver-loop.ts [--backend cpu|nccl] [--steps N]
 *
 * vLLM's pattern for TP workers: the driver (rank 0 of the TP group) schedules, then
 * broadcasts the step's inputs with broadcastTensorDict (tensors on the device and on
 * the host, plus plain values); the others wait in a loop and stop on an empty dict.
 * Every step's checksum is compared across ranks and with the driver's own. Default
 * backend: nccl when 2 or more GPUs are visible (up to 4 ranks), else 4 CPU ranks.
 * Exits 0 when every rank saw every step's inputs exactly.
 */
import { cudaDeviceCount, launchGroup, ncclAvailable } from 'gpugroup';
import { expectedChecksum, type loop } from './workers/driver-loop-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/driver-loop.ts [--backend cpu|nccl] [--steps N]

A driver rank broadcasts every step's inputs (broadcastTensorDict) to the others,
which check them against the driver's checksum.

  --backend cpu|nccl  default: nccl when 2 or more GPUs are visible (up to 4 ranks), else 4 CPU ranks
  --steps N           steps to run (default 50)
  -h, --help          show this text`;

const values = commandLine('driver-loop', USAGE, {
  backend: { type: 'string' },
  steps: { type: 'string', default: '50' },
});
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 2 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const steps = Number(values.steps);
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${String(backend)}`
    : backend === 'nccl' && gpus < 2
      ? `--backend nccl needs 2 GPUs, ${gpus} visible`
      : !(Number.isInteger(steps) && steps > 0)
        ? `--steps must be a positive integer, got ${values.steps}`
        : null;
if (usage) {
  console.error(`driver-loop: ${usage}`);
  process.exit(2);
}
const worldSize = backend === 'nccl' ? Math.min(4, gpus) : 4;

const group = await launchGroup({
  worldSize,
  tensorParallelSize: worldSize,
  worker: new URL('./workers/driver-loop-worker.ts', import.meta.url),
  backend,
  timeoutMs: 60_000,
});
let ok = false;
try {
  const results = await group.callAll<Awaited<ReturnType<typeof loop>>>('loop', { steps });
  const errors = results.flatMap((r) => r.errors.map((e) => `rank ${r.rank}: ${e}`));
  const expected = await Promise.all(Array.from({ length: steps }, (_, s) => expectedChecksum(s)));
  for (const r of results) {
    if (r.sums.length !== steps) errors.push(`rank ${r.rank} ran ${r.sums.length} steps, expected ${steps}`);
    const bad = expected.findIndex((e, s) => r.sums[s] !== e);
    if (bad !== -1) errors.push(`rank ${r.rank} step ${bad}: checksum ${r.sums[bad]}, expected ${expected[bad]}`);
  }
  if (errors.length > 0) {
    console.error(`driver-loop: FAILED (${backend}):\n  ${errors.join('\n  ')}`);
  } else {
    const ms = Math.max(...results.map((r) => r.ms));
    console.log(
      `driver-loop: driver broadcast ${steps} steps of inputs (3 tensors + 2 values each) to ${worldSize - 1} workers on ${backend}, ` +
        `then stopped them; every checksum matches (${(ms / steps).toFixed(2)} ms/step)`,
    );
    ok = true;
  }
} finally {
  await group.shutdown();
}
process.exitCode = ok ? 0 : 1;
