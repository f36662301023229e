/**
 * Disaggregated prefill → decode: the prefill rank sends each request's KV cache (keys
 * and values of every layer, plus its tokens and hidden state) to the decode rank
 * through an NcclPipe; the decode rank checks every value.
 *
 *   npx tsx examples/disagg-prefill.ts [--backend cpu|nccl] [--requests N]
 *
 * Default backend: nccl when 2 GPUs are visible, else 2 CPU ranks. Exits 0 when every
 * tensor arrived intact and in order.
 */
import { cudaDeviceCount, freePort, launchGroup, ncclAvailable } from 'gpugroup';
import type { run } from './workers/disagg-prefill-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/disagg-prefill.ts [--backend cpu|nccl] [--requests N]

Sends each request's KV cache from a prefill rank to a decode rank through an NcclPipe
and checks every value on arrival.

  --backend cpu|nccl  default: nccl when 2 GPUs are visible, else 2 CPU ranks
  --requests N        requests to send (default 8)
  -h, --help          show this text`;

const values = commandLine('disagg-prefill', USAGE, {
  backend: { type: 'string' },
  requests: { type: 'string', default: '8' },
});
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 2 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const requests = Number(values.requests);
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${String(backend)}`
    : backend === 'nccl' && gpus < 2
      ? `--backend nccl needs 2 GPUs, ${gpus} visible`
      : !(Number.isInteger(requests) && requests > 0)
        ? `--requests must be a positive integer, got ${values.requests}`
        : null;
if (usage) {
  console.error(`disagg-prefill: ${usage}`);
  process.exit(2);
}

const group = await launchGroup({
  worldSize: 2,
  worker: new URL('./workers/disagg-prefill-worker.ts', import.meta.url),
  backend,
  timeoutMs: 60_000,
});
let ok = false;
try {
  const t0 = performance.now();
  const [, decode] = await group.callAll<Awaited<ReturnType<typeof run>>>('run', { port: await freePort(), requests });
  const ms = performance.now() - t0;
  if (decode.errors.length > 0) {
    console.error(`disagg-prefill: FAILED (${backend}):\n  ${decode.errors.join('\n  ')}`);
  } else {
    console.log(
      `disagg-prefill: ${requests} requests' KV caches (${decode.checked} layer tensors) went prefill → decode through ` +
        `NcclPipe on ${backend}; ` +
        `every value checked (${ms.toFixed(0)} ms)`,
    );
    ok = true;
  }
} finally {
  await group.shutdown();
}
process.exitCode = ok ? 0 : 1;
