/**
 * Parallel state (vllm/distributed/parallel_state.py): the module-level groups of this rank and the functions
 * that build, check and tear them down. One rank actor holds one state (a worker thread
 * has its own module instances, a child process too).
 */
import { cudaDeviceCount, ncclAvailable } from '../../native/index.ts';
import { nodeKey } from '../comm/index.ts';
import { setting } from '../env.ts';
import { GroupClosedError, InvalidArgumentError } from '../errors.ts';
import { log } from '../log.ts';
import {
  type StatelessProcessGroup,
  TcpStoreClient,
  TcpStoreServer,
  listenInThread,
  storeBarrier,
  type Store,
} from '../store/index.ts';
import { setDevice } from '../tensor/index.ts';
import { GroupCoordinator } from './group-coordinator.ts';
import { captureGraph, type CudaGraph, type GraphCaptureContext } from './graph.ts';
import { launcherEnv } from './launcher-env.ts';
import { groupLayout, type ParallelSizes } from './layout.ts';

/** What initDistributedEnvironment establishes. */
export interface DistributedEnvironment {
  rank: number;
  worldSize: number;
  localRank: number;
  backend: 'nccl' | 'cpu';
  device: string;
  store: Store;
  timeoutMs: number;
  /** Deadline of group and communicator creation. */
  startupTimeoutMs: number;
  abortSignal?: AbortSignal;
}

/** Options of {@link initDistributedEnvironment}; unset fields come from torchrun's variables. */
export interface InitOptions {
  worldSize?: number;
  rank?: number;
  localRank?: number;
  masterAddr?: string;
  masterPort?: number;
  backend?: 'nccl' | 'cpu' | 'auto';
  /** CUDA ordinal of this rank (default: localRank). */
  deviceOrdinal?: number;
  timeoutMs?: number;
  /** Deadline of group and communicator creation; default max(timeoutMs, 120 000). */
  startupTimeoutMs?: number;
  /** An existing store connection (launchGroup passes its own). */
  store?: Store;
  abortSignal?: AbortSignal;
}

let env: DistributedEnvironment | null = null;
let ownedStore: { client?: TcpStoreClient; server?: { close(): Promise<void> } } = {};
const groups: {
  world: GroupCoordinator | null;
  tp: GroupCoordinator | null;
  pp: GroupCoordinator | null;
  dp: GroupCoordinator | null;
  ep: GroupCoordinator | null;
} = {
  world: null,
  tp: null,
  pp: null,
  dp: null,
  ep: null,
};
let tpPatched = false;

/**
 * Joins the job: connects to (rank 0: serves) the store at MASTER_ADDR:MASTER_PORT,
 * sets this rank's device, and builds the world group. Arguments override the
 * launcher's variables: torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
 * MASTER_PORT, or else Open MPI's or Slurm's (./launcher-env.ts).
 */
export async function initDistributedEnvironment(opts: InitOptions = {}): Promise<GroupCoordinator> {
  const launcher = launcherEnv();
  const rank = opts.rank ?? launcher.rank ?? 0;
  const worldSize = opts.worldSize ?? launcher.worldSize ?? 1;
  const localRank = opts.localRank ?? launcher.localRank ?? rank;
  const timeoutMs = opts.timeoutMs ?? 300_000;
  if (env) {
    if (env.worldSize !== worldSize)
      throw new InvalidArgumentError(
        'worldSize',
        `world group already initialized with a different world size (${env.worldSize} vs ${worldSize})`,
      );
    return groups.world!;
  }
  if (rank >= worldSize) throw new InvalidArgumentError('rank', `${rank} is out of range for world size ${worldSize}`);
  // GPUGROUP_BACKEND is how `gpugroup run --backend` reaches SPMD ranks.
  const wanted = opts.backend ?? setting('GPUGROUP_BACKEND');
  if (wanted !== 'auto' && wanted !== 'nccl' && wanted !== 'cpu') {
    throw new InvalidArgumentError('backend', `expected 'nccl', 'cpu' or 'auto', got '${wanted}'`);
  }
  const ordinal = opts.deviceOrdinal ?? localRank;
  const backend = wanted === 'auto' ? (cudaDeviceCount() > ordinal && ncclAvailable() ? 'nccl' : 'cpu') : wanted;
  let store = opts.store;
  if (!store) {
    const host = opts.masterAddr ?? launcher.masterAddr ?? '127.0.0.1';
    const port = opts.masterPort ?? launcher.masterPort ?? 29500;
    // On NCCL, rank 0's thread can block in a point-to-point connection setup while a
    // peer still needs the store: serve it from a worker thread then.
    const server =
      rank !== 0
        ? undefined
        : backend === 'nccl'
          ? await listenInThread({ host, port })
          : await TcpStoreServer.listen({ host, port });
    // The teardown at exit (below) decides when rank 0 may stop serving, not the server.
    server?.holdLoop(false);
    const client = await TcpStoreClient.connect({ host, port, timeoutMs });
    ownedStore = { client, server };
    store = client;
  }
  if (backend === 'nccl') setDevice(ordinal);
  const startupTimeoutMs = opts.startupTimeoutMs ?? Math.max(timeoutMs, 120_000);
  env = {
    rank,
    worldSize,
    localRank,
    backend,
    device: backend === 'nccl' ? `cuda:${ordinal}` : 'cpu',
    store,
    timeoutMs,
    startupTimeoutMs,
    abortSignal: opts.abortSignal,
  };
  // Unlike vLLM (world group without a device communicator), ours has one:
  // world-wide collectives are what users of a launched group reach for first.
  groups.world = await buildGroup('world', [Array.from({ length: worldSize }, (_, i) => i)], {
    splittable: setting('GPUGROUP_NCCL_SUBGROUPS') === 'split',
  });
  process.on('beforeExit', teardownAtExit);
  return groups.world;
}

/**
 * An SPMD script that ends without destroyDistributedEnvironment() still exits: no
 * handle of the environment holds the event loop (the store client and the sockets
 * are unref'd, the store server this rank serves too), so once the script's own work
 * is done the loop runs dry and this runs destroyDistributedEnvironment() itself.
 *
 * Doing the whole teardown, not just letting go, is what keeps it correct: rank 0
 * serves the store, and a rank whose script is still running may yet need it (a get
 * of a key rank 0 set before it finished). The teardown's store barrier keeps rank 0
 * (and its store) alive until every rank has finished its script and entered the same
 * barrier, or until the environment's deadline (timeoutMs) passes; then it closes the
 * store and the process ends. A script that calls process.exit() skips this ('beforeExit'
 * is not emitted) and closes the store under its peers.
 */
function teardownAtExit(): void {
  process.off('beforeExit', teardownAtExit);
  const rank = env?.rank ?? -1;
  destroyDistributedEnvironment().catch((err: Error) =>
    log('warn', `rank ${rank}`, `teardown at exit: ${err.name}: ${err.message}`),
  );
}

async function buildGroup(
  name: string,
  groupRanks: number[][],
  split: { splitFrom?: GroupCoordinator; splittable?: boolean } = {},
): Promise<GroupCoordinator> {
  const e = requireEnv();
  return GroupCoordinator.create({
    ...split,
    groupRanks,
    rank: e.rank,
    localRank: e.localRank,
    store: e.store,
    backend: e.backend,
    device: e.device,
    groupName: name,
    timeoutMs: e.timeoutMs,
    initTimeoutMs: e.startupTimeoutMs,
    abortSignal: e.abortSignal,
  });
}

function requireEnv(): DistributedEnvironment {
  if (!env)
    throw new GroupClosedError('distributed environment is not initialized; call initDistributedEnvironment() first');
  return env;
}

/**
 * Builds the TP, PP, DP and EP groups with vLLM's layout (initialize_model_parallel). DP defaults
 * to world / (TP × PP), so that the replicas form the DP groups (vLLM leaves that
 * remainder to an "external DP" axis without a group).
 */
export async function initializeModelParallel(sizes: ParallelSizes = {}): Promise<void> {
  const e = requireEnv();
  const tp = sizes.tensorParallelSize ?? 1;
  const pp = sizes.pipelineParallelSize ?? 1;
  if (groups.tp)
    throw new InvalidArgumentError('tensorParallelSize', 'tensor model parallel group is already initialized');
  const dp = sizes.dataParallelSize ?? e.worldSize / (tp * pp);
  const layout = groupLayout(e.worldSize, {
    tensorParallelSize: tp,
    pipelineParallelSize: pp,
    dataParallelSize: Number.isInteger(dp) ? dp : 1,
  });
  // Same order on every rank: group creation is collective over the world.
  // NCCL: each kind's communicators are split from the world's (GPUGROUP_NCCL_SUBGROUPS).
  const split = { splitFrom: setting('GPUGROUP_NCCL_SUBGROUPS') === 'split' ? (groups.world ?? undefined) : undefined };
  groups.tp = await buildGroup('tp', layout.tp, split);
  groups.pp = await buildGroup('pp', layout.pp, split);
  groups.dp = await buildGroup('dp', layout.dp, split);
  groups.ep = await buildGroup('ep', layout.ep, split);
}

/** Initializes the groups, or checks that the existing ones have these sizes. */
export async function ensureModelParallelInitialized(
  tensorParallelSize: number,
  pipelineParallelSize: number,
): Promise<void> {
  if (!modelParallelIsInitialized()) return initializeModelParallel({ tensorParallelSize, pipelineParallelSize });
  if (groups.tp!.worldSize !== tensorParallelSize) {
    throw new InvalidArgumentError(
      'tensorParallelSize',
      `tensor parallel group already initialized, but of unexpected size. got: ${groups.tp!.worldSize} vs. wanted: ${tensorParallelSize}`,
    );
  }
  if (groups.pp!.worldSize !== pipelineParallelSize) {
    throw new InvalidArgumentError(
      'pipelineParallelSize',
      `pipeline parallel group already initialized, but of unexpected size. got: ${groups.pp!.worldSize} vs. wanted: ` +
        `${pipelineParallelSize}`,
    );
  }
}

export function modelParallelIsInitialized(): boolean {
  return groups.tp !== null && groups.pp !== null;
}

function getter(kind: keyof typeof groups, message: string): () => GroupCoordinator {
  return () => {
    const g = groups[kind];
    if (!g) throw new GroupClosedError(message);
    return g;
  };
}

/** The world group. */
export const getWorldGroup = getter('world', 'world group is not initialized');
/** The tensor-parallel group. */
export const getTpGroup = getter('tp', 'tensor model parallel group is not initialized');
/** The pipeline-parallel group. */
export const getPpGroup = getter('pp', 'pipeline model parallel group is not initialized');
/** The data-parallel group. */
export const getDpGroup = getter('dp', 'data parallel group is not initialized');
/** The expert-parallel group. */
export const getEpGroup = getter('ep', 'expert parallel group is not initialized');
export const getTensorModelParallelWorldSize = (): number => getTpGroup().worldSize;
export const getTensorModelParallelRank = (): number => getTpGroup().rankInGroup;
export const getPipelineModelParallelWorldSize = (): number => getPpGroup().worldSize;
export const getPipelineModelParallelRank = (): number => getPpGroup().rankInGroup;

/** The environment established by initDistributedEnvironment. */
export function getDistributedEnvironment(): DistributedEnvironment {
  return requireEnv();
}

/** Runs `fn` with the TP group replaced by `tpGroup` (vLLM's patch_tensor_parallel_group). */
export async function patchTensorParallelGroup<T>(tpGroup: GroupCoordinator, fn: () => Promise<T> | T): Promise<T> {
  if (tpPatched) throw new InvalidArgumentError('tpGroup', "Should not call when it's already patched");
  const previous = groups.tp;
  tpPatched = true;
  groups.tp = tpGroup;
  try {
    return await fn();
  } finally {
    groups.tp = previous;
    tpPatched = false;
  }
}

/** Destroys TP, PP, DP and EP (the world group stays). */
export async function destroyModelParallel(): Promise<void> {
  for (const kind of ['tp', 'pp', 'dp', 'ep'] as const) {
    await groups[kind]?.destroy();
    groups[kind] = null;
  }
}

/**
 * Destroys the world group and closes the store this rank opened. Collective in SPMD
 * jobs: rank 0 closes the store it serves only after every rank got here (or at the
 * deadline, then with StoreTimeoutError; the store is closed either way).
 */
export async function destroyDistributedEnvironment(): Promise<void> {
  process.off('beforeExit', teardownAtExit);
  const e = env;
  const owned = ownedStore;
  ownedStore = {};
  try {
    await destroyModelParallel();
    await groups.world?.destroy();
    groups.world = null;
    env = null;
    if (e && owned.client && e.worldSize > 1) {
      // SPMD: rank 0 serves the store. A last barrier in which rank 0 leaves after every
      // other rank has departed, so closing the server cannot cut a peer off mid-call.
      await storeBarrier(owned.client, 'gpugroup/teardown', {
        rank: e.rank,
        worldSize: e.worldSize,
        timeoutMs: e.timeoutMs,
        hostRank: 0,
      });
    }
  } finally {
    owned.client?.close();
    await owned.server?.close();
  }
}

/** Same-node test of vLLM (in_the_same_node_as) for a launched group: every rank of a node shares its host name. */
export async function inTheSameNodeAs(group: StatelessProcessGroup, sourceRank = 0): Promise<boolean[]> {
  const hosts = await group.allGatherObj(nodeKey());
  return hosts.map((h) => h === hosts[sourceRank]);
}

/**
 * Module-level graph capture (parallel_state.py: graph_capture): captures what `fn` enqueues, the TP and
 * PP groups' collectives included, on a fresh stream of this rank's device.
 */
export function graphCapture<T>(
  fn: (ctx: GraphCaptureContext) => Promise<T> | T,
  context?: GraphCaptureContext,
): Promise<CudaGraph<T>> {
  return captureGraph(requireEnv().backend, fn, context);
}
