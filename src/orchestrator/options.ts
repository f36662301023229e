/** launchGroup's options: defaults and validation, before anything starts. */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';
import { cpus as hostCpus } from 'node:os';
import { InvalidArgumentError } from '../errors.ts';
import { loaderFor } from '../loader.ts';
import { describeValue, nonNegativeInt, positiveInt } from '../validate.ts';

/** Options of {@link launchGroup}. */
export interface LaunchOptions {
  /** Total ranks across all nodes. Default nnodes × nprocPerNode (nprocPerNode default 1): one rank on one node. */
  worldSize?: number;
  /** Module (URL or path) whose exported functions become actor methods. */
  worker: URL | string;
  /** `process` (default) or `thread`. */
  mode?: 'process' | 'thread';
  /** `nccl`, `cpu` or `auto` (default: nccl when enough GPUs and libnccl are present). */
  backend?: 'nccl' | 'cpu' | 'auto';
  /** CUDA ordinal per local rank (default 0..n-1). */
  devices?: number[];
  /** Deadline of each call, of startup and of every blocking wait, in ms. Default 120 000. */
  timeoutMs?: number;
  /** Deadline of startup (spawn, store, groups, NCCL init) in ms. Default max(timeoutMs, 120 000). */
  startupTimeoutMs?: number;
  /** Extra environment variables for the ranks. */
  env?: Record<string, string>;
  tensorParallelSize?: number;
  pipelineParallelSize?: number;
  /** Multi-node: number of nodes (coordinators), this node's index, and where node 0 serves the store. */
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Ranks started by this coordinator. Default worldSize / nnodes. */
  nprocPerNode?: number;
  /**
   * Lets several ranks share one CUDA device: a rehearsal of a multi-GPU job on fewer
   * GPUs, for tests. Process mode only. Each rank process gets its own `NCCL_HOSTID`, so
   * NCCL takes every rank for a host of its own and joins them through its socket
   * transport over loopback (`NCCL_SOCKET_IFNAME=lo`, `NCCL_IB_DISABLE=1` unless set):
   * results are NCCL's real ones, but the ranks' kernels time-share the GPU, so each
   * collective takes milliseconds. Never for production or for timings. Default false.
   */
  shareDevices?: boolean;
  /**
   * The CPUs each local rank's thread may run on, by local rank (`[[2], [3]]`): the rank
   * pins its own thread (`sched_setaffinity`) before it sets up its device and
   * communicators, so threads it starts afterwards (NCCL's, the copy helpers of pageable
   * host↔device copies) inherit the set: to keep a rank on its GPU's NUMA node, or off
   * the CPUs of other ranks. Linux only. Default: the scheduler's choice.
   */
  cpus?: number[][];
}

/** Options after defaults, validated. */
export interface ResolvedOptions {
  worldSize: number;
  workerUrl: string;
  mode: 'process' | 'thread';
  backend: 'nccl' | 'cpu' | 'auto';
  devices: number[];
  timeoutMs: number;
  startupTimeoutMs: number;
  env: Record<string, string>;
  tensorParallelSize: number;
  pipelineParallelSize: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  nprocPerNode: number;
  shareDevices: boolean;
  /** Per local rank, or null: the scheduler's choice. */
  cpus: number[][] | null;
}

/** Every option launchGroup knows; the compiler checks the list against {@link LaunchOptions}. */
const KNOWN = [
  'worldSize',
  'worker',
  'mode',
  'backend',
  'devices',
  'timeoutMs',
  'startupTimeoutMs',
  'env',
  'tensorParallelSize',
  'pipelineParallelSize',
  'nnodes',
  'nodeRank',
  'masterAddr',
  'masterPort',
  'nprocPerNode',
  'shareDevices',
  'cpus',
] as const satisfies readonly (keyof LaunchOptions)[];
type Missing = Exclude<keyof LaunchOptions, (typeof KNOWN)[number]>;
const allListed: [Missing] extends [never] ? true : Missing = true;
void allListed;

/** Edit distance (insertions, deletions, substitutions), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++)
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[y.length];
}

/** The known option a mistyped `key` most likely meant (snake_case, case, typos), or null. */
export function nearestOption(key: string, known: readonly string[] = KNOWN): string | null {
  const camel = key.replace(/[_-]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = Math.min(editDistance(camel, k), editDistance(key, k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : null;
}

function checkKeys(opts: object): void {
  for (const key of Object.keys(opts)) {
    if ((KNOWN as readonly string[]).includes(key)) continue;
    const near = nearestOption(key);
    throw new InvalidArgumentError(
      key,
      `launchGroup has no option '${key}'${near ? `; did you mean '${near}'?` : ''} (options: ${KNOWN.join(', ')})`,
    );
  }
}

/** Applies defaults and checks every option; throws InvalidArgumentError naming the option. */
export function resolveOptions(opts: LaunchOptions): ResolvedOptions {
  if (!opts || typeof opts !== 'object' || Array.isArray(opts))
    throw new InvalidArgumentError('options', `launchGroup needs an options object, got ${describeValue(opts)}`);
  checkKeys(opts);
  const nnodes = positiveInt('nnodes', opts.nnodes ?? 1);
  const nodeRank = nonNegativeInt('nodeRank', opts.nodeRank ?? 0);
  if (nodeRank >= nnodes) throw new InvalidArgumentError('nodeRank', `${nodeRank} is out of range [0, ${nnodes})`);
  // Neither given: one rank per node (a world of 1 on one node), as torchrun's --nproc-per-node defaults to 1.
  const worldSize =
    opts.worldSize !== undefined
      ? positiveInt('worldSize', opts.worldSize)
      : positiveInt('nprocPerNode', opts.nprocPerNode ?? 1) * nnodes;
  const nprocPerNode = positiveInt('nprocPerNode', opts.nprocPerNode ?? worldSize / nnodes);
  if (nprocPerNode * nnodes !== worldSize)
    throw new InvalidArgumentError(
      'worldSize',
      `${worldSize} ranks do not split into ${nnodes} nodes of ${nprocPerNode}`,
    );
  const mode = opts.mode ?? 'process';
  if (mode !== 'process' && mode !== 'thread')
    throw new InvalidArgumentError('mode', `expected 'process' or 'thread', got ${describeValue(mode)}`);
  const backend = opts.backend ?? 'auto';
  if (!['nccl', 'cpu', 'auto'].includes(backend))
    throw new InvalidArgumentError('backend', `expected 'nccl', 'cpu' or 'auto', got ${describeValue(backend)}`);
  const devices = opts.devices ?? Array.from({ length: nprocPerNode }, (_, i) => i);
  if (
    !Array.isArray(devices) ||
    devices.length !== nprocPerNode ||
    !devices.every((d) => Number.isInteger(d) && d >= 0)
  ) {
    throw new InvalidArgumentError(
      'devices',
      `expected ${nprocPerNode} CUDA ordinals (one per local rank), got ${describeValue(devices)}`,
    );
  }
  const shareDevices = opts.shareDevices ?? false;
  if (typeof shareDevices !== 'boolean')
    throw new InvalidArgumentError('shareDevices', `expected a boolean, got ${describeValue(shareDevices)}`);
  // NCCL tells ranks apart by host id, which is per process (getenv): threads of one
  // process cannot pose as separate hosts.
  if (shareDevices && mode !== 'process')
    throw new InvalidArgumentError('shareDevices', "needs mode 'process' (NCCL reads its host id once per process)");
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup !== undefined && !shareDevices) {
    throw new InvalidArgumentError(
      'devices',
      `cuda:${dup} is given to two ranks; one GPU per rank (two ranks on one device would deadlock NCCL; shareDevices ` +
        `rehearses on fewer GPUs)`,
    );
  }
  const cpus = opts.cpus === undefined ? null : checkCpus(opts.cpus, nprocPerNode);
  const timeoutMs = positiveInt('timeoutMs', opts.timeoutMs ?? 120_000);
  const startupTimeoutMs = positiveInt('startupTimeoutMs', opts.startupTimeoutMs ?? Math.max(timeoutMs, 120_000));
  const tensorParallelSize = positiveInt('tensorParallelSize', opts.tensorParallelSize ?? 1);
  const pipelineParallelSize = positiveInt('pipelineParallelSize', opts.pipelineParallelSize ?? 1);
  if (worldSize % (tensorParallelSize * pipelineParallelSize) !== 0) {
    throw new InvalidArgumentError(
      'tensorParallelSize',
      `world size ${worldSize} is not divisible by tensorParallelSize × pipelineParallelSize = ` +
        `${tensorParallelSize * pipelineParallelSize}`,
    );
  }
  let workerUrl: string;
  if (opts.worker instanceof URL) workerUrl = opts.worker.href;
  else if (typeof opts.worker === 'string' && opts.worker.length > 0)
    workerUrl = opts.worker.startsWith('file:') ? opts.worker : pathToFileURL(opts.worker).href;
  else
    throw new InvalidArgumentError(
      'worker',
      `expected the URL or path of a worker module, got ${describeValue(opts.worker)}`,
    );
  if (!existsSync(fileURLToPath(workerUrl)))
    throw new InvalidArgumentError('worker', `no such module: ${fileURLToPath(workerUrl)}`);
  loaderFor(workerUrl, 'worker'); // a TypeScript module without tsx fails here, before any rank starts
  const masterPort = nonNegativeInt('masterPort', opts.masterPort ?? 0);
  if (masterPort > 65535) throw new InvalidArgumentError('masterPort', `invalid port ${masterPort}`);
  if (nnodes > 1 && masterPort === 0)
    throw new InvalidArgumentError(
      'masterPort',
      'a multi-node launch needs a fixed masterPort that every node can reach',
    );
  const env = opts.env ?? {};
  if (typeof env !== 'object' || env === null || Array.isArray(env))
    throw new InvalidArgumentError('env', `expected an object of string values, got ${describeValue(env)}`);
  for (const [k, v] of Object.entries(env))
    if (typeof v !== 'string')
      throw new InvalidArgumentError('env', `expected an object of string values; ${k} is ${describeValue(v)}`);
  const masterAddr = opts.masterAddr ?? '127.0.0.1';
  if (typeof masterAddr !== 'string' || masterAddr.length === 0)
    throw new InvalidArgumentError('masterAddr', `expected a host name or address, got ${describeValue(masterAddr)}`);
  return {
    worldSize,
    workerUrl,
    mode,
    backend,
    devices,
    timeoutMs,
    startupTimeoutMs,
    env,
    tensorParallelSize,
    pipelineParallelSize,
    nnodes,
    nodeRank,
    masterAddr,
    masterPort,
    nprocPerNode,
    shareDevices,
    cpus,
  };
}

/** `cpus`: one non-empty list of this host's CPU numbers per local rank (Linux only). */
function checkCpus(cpus: unknown, nprocPerNode: number): number[][] {
  if (process.platform !== 'linux')
    throw new InvalidArgumentError(
      'cpus',
      `pins threads through Linux's sched_setaffinity; this is ${process.platform}`,
    );
  const count = Math.max(1, hostCpus().length); // online CPUs, numbered from 0
  const valid =
    Array.isArray(cpus) &&
    cpus.length === nprocPerNode &&
    cpus.every(
      (list) => Array.isArray(list) && list.length > 0 && list.every((c) => Number.isInteger(c) && c >= 0 && c < count),
    );
  if (!valid) {
    throw new InvalidArgumentError(
      'cpus',
      `expected ${nprocPerNode} non-empty list(s) of CPU numbers in [0, ${count}) (one per local rank), got ${describeValue(cpus)}`,
    );
  }
  return (cpus as number[][]).map((list) => [...list]);
}
