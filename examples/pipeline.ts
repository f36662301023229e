/**
 * Pipeline parallelism: PP=2 stages, each TP=2, passing activations as tensor dicts.
 *
 *   npx tsx examples/pipeline.ts [--backend cpu|nccl] [--microbatches N]
 *
 * 4 ranks: stage 0 (ranks 0, 1) runs the first half of an 8-layer toy model, stage 1
 * (ranks 2, 3) the second. Every layer all-reduces over its stage's TP group; each
 * microbatch goes from stage 0 to stage 1 with sendTensorDict/recvTensorDict, every TP
 * rank sending its slice and stage 1 all-gathering it. The outputs are checked against
 * the whole model run in one place. Default backend: nccl when 4 GPUs are visible,
 * else cpu. Exits 0 when every output matched.
 */
import { cudaDeviceCount, launchGroup, ncclAvailable } from 'gpugroup';
import { reference, type PipelineJob, type run } from './workers/pipeline-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/pipeline.ts [--backend cpu|nccl] [--microbatches N]

PP=2 stages of TP=2 ranks run a toy 8-layer model, passing activations as tensor dicts;
the outputs are checked against the whole model run in one place.

  --backend cpu|nccl  default: nccl when 4 GPUs are visible, else cpu
  --microbatches N    microbatches to push through (default 4)
  -h, --help          show this text`;

const values = commandLine('pipeline', USAGE, {
  backend: { type: 'string' },
  microbatches: { type: 'string', default: '4' },
});
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 4 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const microbatches = Number(values.microbatches);
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${String(backend)}`
    : backend === 'nccl' && gpus < 4
      ? `--backend nccl needs 4 GPUs (PP=2 × TP=2), ${gpus} visible`
      : !(Number.isInteger(microbatches) && microbatches > 0)
        ? `--microbatches must be a positive integer, got ${values.microbatches}`
        : null;
if (usage) {
  console.error(`pipeline: ${usage}`);
  process.exit(2);
}

const tp = 2;
const pp = 2;
const job: PipelineJob = { numLayers: 8, microbatches, tokens: 8, hidden: 32 };
const group = await launchGroup({
  worldSize: tp * pp,
  tensorParallelSize: tp,
  pipelineParallelSize: pp,
  worker: new URL('./workers/pipeline-worker.ts', import.meta.url),
  backend,
  timeoutMs: 60_000,
});
let ok = false;
try {
  const results = await group.callAll<Awaited<ReturnType<typeof run>>>('run', job);
  const errors = results.flatMap((r) => r.errors.map((e) => `rank ${r.rank}: ${e}`));
  const last = results.filter((r) => r.stage === pp - 1);
  if (last.length !== tp) errors.push(`expected ${tp} ranks in the last stage, got ${last.length}`);
  for (const r of last) {
    if (r.outputs.length !== microbatches)
      errors.push(`rank ${r.rank}: ${r.outputs.length} outputs, expected ${microbatches}`);
    r.outputs.forEach((out, mb) => {
      const want = reference(job, mb, tp);
      const bad = want.findIndex((v, i) => out[i] !== v);
      if (out.length !== want.length)
        errors.push(`rank ${r.rank} microbatch ${mb}: ${out.length} elements, expected ${want.length}`);
      else if (bad !== -1)
        errors.push(`rank ${r.rank} microbatch ${mb}: element ${bad} is ${out[bad]}, expected ${want[bad]}`);
    });
  }
  if (errors.length > 0) {
    console.error(`pipeline: FAILED (${backend}):\n  ${errors.join('\n  ')}`);
  } else {
    const stages = [0, 1]
      .map((s) => results.find((r) => r.stage === s)!)
      .map((r) => `stage ${r.stage}: layers ${r.layers[0]}–${r.layers[1] - 1}`);
    const ms = Math.max(...results.map((r) => r.ms));
    console.log(
      `pipeline: PP=${pp} × TP=${tp} on ${backend} (${stages.join(', ')}): ${microbatches} microbatches sent as tensor ` +
        `dicts, outputs match the unsplit model (${ms.toFixed(1)} ms)`,
    );
    ok = true;
  }
} finally {
  await group.shutdown();
}
process.exitCode = ok ? 0 : 1;
