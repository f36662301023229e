/**
 * A two-node cluster rehearsed on one machine.
 *
 *   npx tsx examples/two-nodes.ts [--backend cpu|nccl]
 *
 * Starts two node launchers, as you would on two hosts:
 *
 *   gpugroup run --nnodes 2 --node-rank 0 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port P examples/workers/two-nodes-rank.ts
 *   gpugroup run --nnodes 2 --node-rank 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port P examples/workers/two-nodes-rank.ts
 *
 * Rank 0 (on node 0) serves the store on loopback; each node's 2 ranks form a TP group
 * and the nodes are the 2 PP stages. GPUGROUP_NODE_ID (set by the launcher to the node
 * rank) keeps the simulated nodes apart. With NCCL each node gets 2 of the GPUs through
 * CUDA_VISIBLE_DEVICES. Default backend: nccl when 4 GPUs are visible, else cpu. Exits 0
 * when both launchers succeeded and all 4 ranks passed their checks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cudaDeviceCount, freePort, ncclAvailable } from 'gpugroup';
import { commandLine } from './util/command-line.ts';

const USAGE = `usage: npx tsx examples/two-nodes.ts [--backend cpu|nccl]

Rehearses a two-node job on this machine: two "gpugroup run" launchers of 2 ranks each.

  --backend cpu|nccl  default: nccl when 4 GPUs are visible, else cpu
  -h, --help          show this text`;

const values = commandLine('two-nodes', USAGE, { backend: { type: 'string' } });
const gpus = cudaDeviceCount();
const backend = (values.backend ?? (gpus >= 4 && ncclAvailable() ? 'nccl' : 'cpu')) as 'cpu' | 'nccl';
const usage =
  backend !== 'cpu' && backend !== 'nccl'
    ? `--backend must be cpu or nccl, got ${String(backend)}`
    : backend === 'nccl' && gpus < 4
      ? `--backend nccl needs 4 GPUs (2 per node), ${gpus} visible`
      : null;
if (usage) {
  console.error(`two-nodes: ${usage}`);
  process.exit(2);
}

const NODES = 2;
const PER_NODE = 2;
const DEADLINE_MS = 60_000;
const port = await freePort();
const launcher = fileURLToPath(new URL('../bin/gpugroup.mjs', import.meta.url));
const script = fileURLToPath(new URL('./workers/two-nodes-rank.ts', import.meta.url));
// The GPUs this process may use, split between the nodes.
const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',') ?? Array.from({ length: gpus }, (_, i) => String(i));

interface RankResult {
  rank: number;
  node: number;
  device: string;
  backend: string;
  errors: string[];
}
const results: RankResult[] = [];
const t0 = performance.now();

/** Starts node `node`'s launcher; resolves with its exit code. Rank lines are echoed with the node's name. */
function startNode(node: number): { child: ChildProcess; exited: Promise<number> } {
  const args = [
    launcher,
    'run',
    '--nnodes',
    String(NODES),
    '--node-rank',
    String(node),
    '--nproc-per-node',
    String(PER_NODE),
    '--master-addr',
    '127.0.0.1',
    '--master-port',
    String(port),
    '--backend',
    backend,
    '--grace-ms',
    '2000',
    script,
  ];
  const env = { ...process.env };
  if (backend === 'nccl') env.CUDA_VISIBLE_DEVICES = visible.slice(node * PER_NODE, (node + 1) * PER_NODE).join(',');
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      const m = /^two-nodes-result (.*)$/.exec(line);
      if (m) results.push(JSON.parse(m[1]) as RankResult);
      else console.error(`[node ${node}] ${line}`);
    });
  }
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
    child.once('error', () => resolve(127));
  });
  return { child, exited };
}

const nodes = Array.from({ length: NODES }, (_, n) => startNode(n));
/** Stops every launcher still running (each forwards SIGTERM to its ranks), SIGKILL after a grace. */
const stopAll = () => {
  for (const { child } of nodes) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  setTimeout(() => {
    for (const { child } of nodes) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, 3_000).unref();
};
// A node that fails takes the other one down (a real cluster's ranks would time out instead).
for (const { exited } of nodes) {
  void exited.then((code) => {
    if (code !== 0) stopAll();
  });
}
const deadline = setTimeout(() => {
  console.error(`two-nodes: not done within ${DEADLINE_MS / 1000} s; stopping both nodes`);
  stopAll();
}, DEADLINE_MS);
const codes = await Promise.all(nodes.map((n) => n.exited));
clearTimeout(deadline);

const errors: string[] = [];
for (const [n, code] of codes.entries()) if (code !== 0) errors.push(`node ${n}'s launcher exited with code ${code}`);
results.sort((a, b) => a.rank - b.rank);
if (results.map((r) => r.rank).join() !== '0,1,2,3')
  errors.push(`results from ranks [${results.map((r) => r.rank).join(', ')}], expected [0, 1, 2, 3]`);
for (const r of results) {
  if (r.node !== Math.floor(r.rank / PER_NODE)) errors.push(`rank ${r.rank} ran on node ${r.node}`);
  if (r.backend !== backend) errors.push(`rank ${r.rank} used backend ${r.backend}`);
  errors.push(...r.errors.map((e) => `rank ${r.rank}: ${e}`));
}
if (errors.length > 0) {
  console.error(`two-nodes: FAILED (${backend}):\n  ${errors.join('\n  ')}`);
  process.exitCode = 1;
} else {
  const devices = results.map((r) => `${r.rank}@node${r.node}:${r.device}`).join(' ');
  console.log(
    `two-nodes: 2 launchers × 2 ranks on ${backend} met at 127.0.0.1:${port} (${devices}); TP=2 all-reduce inside each node and ` +
      `PP=2 tensor dicts across the nodes check out (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
}
