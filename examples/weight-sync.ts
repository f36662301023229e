/**
 * Weight sync, trainer → inference workers (as vLLM's weight transfer engine):
 *
 *   npx tsx examples/weight-sync.ts [--backend cpu|nccl] [--steps N]
 *
 * This process is the trainer (rank 0 of the transfer group, on cuda:0 with NCCL);
 * a launchGroup of inference workers (cuda:1.. with NCCL) joins it. Each step the
 * trainer changes its weights, saves them to a safetensors checkpoint and loads them
 * back onto its device (as a trainer resuming from a checkpoint would), sends them
 * packed, and every worker checks every tensor against the trainer's checksum. Default backend: nccl when 2 or more GPUs are
 * visible, else cpu. Exits 0 when every checksum matched.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cudaDeviceCount, freePort, launchGroup, ncclAvailable, setDevice, Tensor, type DType } from 'gpugroup';
import { NcclWeightTransferEngine, type NamedTensors } from 'gpugroup';
import { loadSafetensors, saveSafetensors } from 'gpugroup';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/weight-sync.ts [--backend cpu|nccl] [--steps N]

This process is a trainer that sends its weights, packed, to a group of inference
workers every step; each worker checks every tensor.

  --backend cpu|nccl  default: nccl when 2 or more GPUs are visible, else cpu
  --steps N           weight updates to send (default 3)
  -h, --help          show this text`;

const values = commandLine('weight-sync', USAGE, {
  backend: { type: 'string' },
  steps: { type: 'string', default: '3' },
});
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 2 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const steps = Number(values.steps);
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${backend}`
    : backend === 'nccl' && gpus < 2
      ? `--backend nccl needs 2 GPUs (trainer + 1 worker), ${gpus} visible`
      : !(Number.isInteger(steps) && steps > 0)
        ? `--steps must be a positive integer, got ${values.steps}`
        : null;
if (usage) {
  console.error(`weight-sync: ${usage}`);
  process.exit(2);
}
const workers = backend === 'nccl' ? Math.min(3, gpus - 1) : 2;
const device = backend === 'nccl' ? 'cuda:0' : 'cpu';

/** A small model: name, shape, dtype. */
const LAYOUT: [string, number[], DType][] = [
  ['embed.weight', [512, 64], 'bfloat16'],
  ...[0, 1, 2, 3].flatMap((l): [string, number[], DType][] => [
    [`layers.${l}.attn.qkv.weight`, [64, 192], 'float32'],
    [`layers.${l}.mlp.up.weight`, [64, 256], 'bfloat16'],
    [`layers.${l}.norm.weight`, [64], 'float32'],
  ]),
  ['lm_head.weight', [64, 512], 'float16'],
];

/**
 * The trainer's weights after `step` steps, read from the safetensors checkpoint it
 * wrote: the "training" makes small integers (exact in every dtype) and their checksums.
 */
async function weightsAt(
  step: number,
  checkpoint: string,
): Promise<{ weights: NamedTensors; checksums: Record<string, number> }> {
  const weights: NamedTensors = [];
  const checksums: Record<string, number> = {};
  LAYOUT.forEach(([name, shape, dtype], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Array.from({ length: n }, (_, i) => ((i * 7 + step * 13 + k * 3) % 17) - 8);
    checksums[name] = data.reduce((a, b) => a + b, 0);
    weights.push([name, Tensor.fromArray(data, { shape, dtype, device })]);
  });
  await saveSafetensors(checkpoint, weights, { step: String(step) });
  for (const [, t] of weights) t.dispose();
  const loaded = await loadSafetensors(checkpoint, { device });
  return { weights: LAYOUT.map(([name]) => [name, loaded.get(name)!]), checksums };
}

if (backend === 'nccl') setDevice(0);
const group = await launchGroup({
  worldSize: workers,
  worker: new URL('./workers/weight-sync-worker.ts', import.meta.url),
  backend,
  mode: 'process',
  devices: backend === 'nccl' ? Array.from({ length: workers }, (_, i) => i + 1) : undefined,
  timeoutMs: 60_000,
});
let ok = false;
const checkpoints = await mkdtemp(join(tmpdir(), 'weight-sync-'));
try {
  const info = { masterAddress: '127.0.0.1', masterPort: await freePort(), rankOffset: 1, worldSize: workers + 1 };
  const [trainer] = await Promise.all([
    NcclWeightTransferEngine.trainerInit(info, { device, timeoutMs: 60_000 }),
    group.callAll('join', info),
  ]);
  try {
    const bufferBytes = 64 << 10;
    let tensors = 0;
    let bytes = 0;
    const t0 = performance.now();
    const failures: string[] = [];
    for (let step = 1; step <= steps; step++) {
      const { weights, checksums } = await weightsAt(step, join(checkpoints, 'model.safetensors'));
      const update = {
        names: weights.map(([n]) => n),
        dtypeNames: weights.map(([, t]) => t.dtype),
        shapes: weights.map(([, t]) => [...t.shape]),
        packed: true,
        packedBufferSizeBytes: bufferBytes,
      };
      const [, results] = await Promise.all([
        NcclWeightTransferEngine.trainerSendWeights(weights, {
          group: trainer,
          packed: true,
          packedBufferSizeBytes: bufferBytes,
        }),
        group.callAll<{ loaded: number; bad: string[] }>('sync', { update, checksums }),
      ]);
      results.forEach((r, w) => {
        if (r.loaded !== weights.length)
          failures.push(`step ${step} worker ${w}: loaded ${r.loaded} of ${weights.length}`);
        failures.push(...r.bad.map((b) => `step ${step} worker ${w}: ${b}`));
      });
      tensors = weights.length;
      bytes = weights.reduce((a, [, t]) => a + t.nbytes, 0);
      for (const [, t] of weights) t.dispose();
    }
    const ms = (performance.now() - t0) / steps;
    if (failures.length > 0) {
      console.error(`weight-sync: FAILED (${backend}):\n  ${failures.join('\n  ')}`);
    } else {
      console.log(
        `weight-sync: ${steps} steps × ${tensors} tensors (${(bytes / 1e6).toFixed(2)} MB, read from a safetensors checkpoint, packed in ` +
          `${bufferBytes >> 10} KiB buffers) to ${workers} workers on ${backend}: all checksums match, ${ms.toFixed(1)} ms/step`,
      );
      ok = true;
    }
  } finally {
    await group.callAll('leave');
    await trainer.close();
  }
} finally {
  await group.shutdown();
  await rm(checkpoints, { recursive: true, force: true });
}
process.exitCode = ok ? 0 : 1;
