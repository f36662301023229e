/**
 * gpugroup in one minute:
 *
 *   npm run demo                      # = npx tsx examples/quickstart.ts
 *   npx tsx examples/quickstart.ts --backend cpu
 *
 * Launches a group on the best backend here (one rank per visible GPU with NCCL, else 4
 * CPU ranks), runs an all-reduce, a tensor-dict broadcast and (on GPUs) a CUDA-graph-
 * captured all-reduce, checks every result and prints a report. On one GPU the world is
 * one rank, whose collectives return their input as vLLM's do; the demo then shows NCCL
 * on that GPU through a one-rank NCCL communicator. Exits 0 when every check passed.
 */
import { cudaDeviceCount, cudaDeviceName, launchGroup, nccl, ncclAvailable, type Group } from 'gpugroup';
import type { Check, ncclOneRank } from './workers/quickstart-worker.ts';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npm run demo [-- --backend cpu|nccl]
       npx tsx examples/quickstart.ts [--backend cpu|nccl]

Launches a group on the best backend here, runs an all-reduce, a tensor-dict broadcast
and (on GPUs) a CUDA-graph-captured all-reduce, checks every result and prints a report.

  --backend cpu|nccl  default: nccl when a GPU and libnccl are found (one rank per GPU), else 4 CPU ranks
  -h, --help          show this text`;

const values = commandLine('quickstart', USAGE, { backend: { type: 'string' } });
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 1 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
if (backend !== 'cpu' && backend !== 'nccl') {
  console.error(`quickstart: --backend must be cpu or nccl, got ${String(backend)}`);
  process.exit(2);
}
if (backend === 'nccl' && gpus < 1) {
  console.error('quickstart: --backend nccl needs a GPU, none visible');
  process.exit(2);
}
const worldSize = backend === 'nccl' ? gpus : 4;
const t0 = performance.now();

/** One line that keeps updating while the ranks start (a terminal), or one plain line (a pipe). */
function progress(text: string): () => void {
  if (!process.stdout.isTTY) {
    console.log(`${text}…`);
    return () => undefined;
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  const draw = () =>
    process.stdout.write(`\r${frames[i++ % frames.length]} ${text}… ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  draw();
  const timer = setInterval(draw, 100);
  return () => {
    clearInterval(timer);
    process.stdout.write('\r\x1b[2K');
  };
}

const row = (label: string, text: string) => console.log(`  ${label.padEnd(12)} ${text}`);
const mark = (c: Check) => (c.ok ? '✓' : '✗');
const ms = (v: number) => (v < 1 ? `${(v * 1000).toFixed(1)} µs` : `${v.toFixed(2)} ms`);

/** Combines the ranks' checks: all must pass; the time is the slowest rank's. */
function combine(checks: Check[]): Check {
  const bad = checks.findIndex((c) => !c.ok);
  return {
    ok: bad === -1,
    detail: bad === -1 ? checks[0].detail : `rank ${bad}: ${checks[bad].detail}`,
    ms: Math.max(...checks.map((c) => c.ms)),
  };
}

const stop = progress(
  `starting ${worldSize} ${backend === 'nccl' ? 'GPU' : 'CPU'} rank${worldSize === 1 ? '' : 's'} (one process each)`,
);
let group: Group;
try {
  group = await launchGroup({
    worldSize,
    worker: new URL('./workers/quickstart-worker.ts', import.meta.url),
    backend,
    mode: 'process',
    timeoutMs: 60_000,
    startupTimeoutMs: 60_000,
  });
} catch (err) {
  stop();
  console.error(`quickstart: FAILED to start the ranks: ${(err as Error).message}`);
  process.exit(1);
}
stop();
const launchS = (performance.now() - t0) / 1000;

const results: Check[] = [];
try {
  console.log('gpugroup quickstart');
  const cpuWhy = values.backend === 'cpu' ? 'asked for' : gpus === 0 ? 'no GPU visible' : 'libnccl not found';
  row(
    'backend',
    backend === 'nccl' ? `nccl${worldSize === 1 ? ' (one GPU: a world of 1 rank)' : ''}` : `cpu (${cpuWhy})`,
  );
  row('ranks', `${worldSize} process${worldSize === 1 ? '' : 'es'}, ready in ${launchS.toFixed(2)} s`);
  const named = (i: number) => `cuda:${i}${cudaDeviceName(i) ? ` ${cudaDeviceName(i)}` : ''}`;
  row(
    'devices',
    backend === 'nccl' ? Array.from({ length: worldSize }, (_, i) => named(i)).join(', ') : `cpu × ${worldSize}`,
  );
  row(
    'NCCL',
    ncclAvailable()
      ? `${nccl().version} (${nccl().path})${backend === 'cpu' ? ', not used' : ''}`
      : 'not found (CPU backend only)',
  );

  const numel = 1 << 18;
  const ar = combine(await group.callAll<Check>('allReduce', { numel, iters: 20 }));
  results.push(ar);
  row(
    'all-reduce',
    worldSize === 1
      ? `${mark(ar)} ${(numel * 4) >> 20} MiB float32, world of 1: ${ar.detail} (returns its input, as vLLM does)`
      : `${mark(ar)} ${(numel * 4) >> 20} MiB float32 over ${worldSize} ranks: ${ar.detail}; ${ms(ar.ms)} per op`,
  );

  const bd = combine(await group.callAll<Check>('broadcastDict', { iters: 10 }));
  results.push(bd);
  row(
    'tensor dict',
    `${mark(bd)} broadcastTensorDict from rank 0 (2 tensors + 2 values): ${bd.detail}; ${ms(bd.ms)} per call`,
  );

  if (backend === 'nccl' && worldSize === 1) {
    const replays = 100;
    const [one] = await group.callAll<Awaited<ReturnType<typeof ncclOneRank>>>('ncclOneRank', {
      numel,
      iters: 20,
      replays,
    });
    results.push(one.ops, one.graph);
    row(
      'nccl 1 rank',
      `${mark(one.ops)} ${(numel * 4) >> 20} MiB float32 through a one-rank NCCL communicator: ${one.ops.detail}; ${ms(one.ops.ms)} per all-gatherv`,
    );
    row(
      'cuda graph',
      `${mark(one.graph)} captured one-rank NCCL all-gatherv, ${replays} replays: ${one.graph.detail}; ${ms(one.graph.ms)} per replay`,
    );
  } else if (backend === 'nccl') {
    const replays = 100;
    const gr = combine(await group.callAll<Check>('graph', { replays }));
    results.push(gr);
    row('cuda graph', `${mark(gr)} captured all-reduce, ${replays} replays: ${gr.detail}; ${ms(gr.ms)} per replay`);
  } else {
    row('cuda graph', '– skipped (needs the NCCL backend)');
  }
} catch (err) {
  results.push({ ok: false, detail: (err as Error).message, ms: 0 });
  console.error(`quickstart: FAILED: ${(err as Error).message}`);
} finally {
  const s0 = performance.now();
  await group.shutdown();
  row('shutdown', `${((performance.now() - s0) / 1000).toFixed(2)} s`);
}
const ok = results.length > 0 && results.every((r) => r.ok);
console.log(
  ok ? `OK: every check passed in ${((performance.now() - t0) / 1000).toFixed(1)} s` : 'FAILED: see the ✗ lines above',
);
process.exitCode = ok ? 0 : 1;
