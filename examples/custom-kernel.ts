/**
 * A custom kernel: RMSNorm written in CUDA C, compiled at run time for each rank's GPU,
 * its output all-reduced over the ranks.
 *
 *   npx tsx examples/custom-kernel.ts [--backend cpu|nccl]
 *
 * 2 ranks. Each compiles the kernel from source (compileKernel: NVRTC, for its device's
 * architecture), launches it on its own rows (one block per row, shared memory for the
 * sum of squares), and all-reduces the normalized rows. Every rank's result is checked
 * against the sum of both ranks' RMSNorm computed in float64 on the host (within 1e-5
 * relative). On the CPU backend the kernel's host implementation runs instead. Default
 * backend: nccl when 2 GPUs are visible, else cpu. Exits 0 when every rank matched.
 */
import { cudaDeviceCount, launchGroup, ncclAvailable } from 'gpugroup';
import { rankInput, rmsNormReference, weights, type normalize } from './workers/custom-kernel-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/custom-kernel.ts [--backend cpu|nccl]

RMSNorm written in CUDA C, compiled at run time for each rank's GPU, its output
all-reduced over 2 ranks and checked against a float64 reference.

  --backend cpu|nccl  default: nccl when 2 GPUs are visible, else cpu (the kernel's host implementation)
  -h, --help          show this text`;

const values = commandLine('custom-kernel', USAGE, { backend: { type: 'string' } });
const gpus = cudaDeviceCount();
const worldSize = 2;
const backend = (values.backend ?? (gpus >= worldSize && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${String(backend)}`
    : backend === 'nccl' && gpus < worldSize
      ? `--backend nccl needs ${worldSize} GPUs, ${gpus} visible`
      : null;
if (usage) {
  console.error(`custom-kernel: ${usage}`);
  process.exit(2);
}

const job = { rows: 64, cols: 1000, eps: 1e-6 };
const group = await launchGroup({
  worldSize,
  worker: new URL('./workers/custom-kernel-worker.ts', import.meta.url),
  backend,
  timeoutMs: 60_000,
});
let ok = false;
try {
  const results = await group.callAll<Awaited<ReturnType<typeof normalize>>>('normalize', job);
  const w = weights(job.cols);
  const parts = Array.from({ length: worldSize }, (_, r) =>
    rmsNormReference(rankInput(r, job.rows, job.cols), w, job.cols, job.eps),
  );
  const want = parts[0].map((_, i) => parts.reduce((s, p) => s + p[i], 0));
  const errors: string[] = [];
  for (const r of results) {
    const bad = want.findIndex((v, i) => !(Math.abs(r.values[i] - v) <= 1e-5 * Math.max(1, Math.abs(v))));
    if (r.values.length !== want.length)
      errors.push(`rank ${r.rank}: ${r.values.length} values, expected ${want.length}`);
    else if (bad !== -1) errors.push(`rank ${r.rank}: element ${bad} is ${r.values[bad]}, expected ${want[bad]}`);
  }
  if (errors.length > 0) {
    console.error(`custom-kernel: FAILED (${backend}):\n  ${errors.join('\n  ')}`);
  } else {
    const where =
      backend === 'nccl' ? 'compiled with NVRTC and run on each rank’s GPU' : 'run by its host implementation';
    const ms = Math.max(...results.map((r) => r.ms));
    console.log(
      `custom-kernel: RMSNorm of ${job.rows}×${job.cols} per rank, ${where}, all-reduced over ${worldSize} ranks on ${backend}: ` +
        `every rank matches the float64 reference within 1e-5 (${ms.toFixed(2)} ms)`,
    );
    ok = true;
  }
} finally {
  await group.shutdown();
}
process.exitCode = ok ? 0 : 1;
