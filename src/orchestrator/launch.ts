/**
 * `launchGroup()`: validates the options, serves the store (node 0), starts this node's
 * rank actors and resolves once every one has connected to the store and built its
 * world group. A rank that dies during startup, or startup past `startupTimeoutMs`, rejects
 * launchGroup after everything it started is gone again.
 */
import { CallTimeoutError, RankFailedError } from '../errors.ts';
import { TcpStoreServer } from '../store/index.ts';
import { copyTunablesEnv } from '../tensor/index.ts';
import { resolveBackend } from './backend.ts';
import { Group, stopActors, type Actor } from './group.ts';
import { resolveOptions, type LaunchOptions, type ResolvedOptions } from './options.ts';
import { decodeError, type RankInit } from './protocol.ts';
import { spawnProcess, spawnThread } from './spawn.ts';

/** Grace given to ranks that are still starting when a launch fails. */
const FAILED_LAUNCH_GRACE_MS = 1_000;

/** Environment of one rank: the user's extras, the backend's, and torchrun's variables. */
function rankEnv(
  opts: ResolvedOptions,
  backendEnv: Record<string, string>,
  storePort: number,
  localRank: number,
): Record<string, string> {
  return {
    ...opts.env,
    ...backendEnv,
    // One rank per process: the libuv pool (koffi .async) need not be shared among ranks.
    UV_THREADPOOL_SIZE: opts.env.UV_THREADPOOL_SIZE ?? process.env.UV_THREADPOOL_SIZE ?? '8',
    GPUGROUP_NODE_ID: String(opts.nodeRank),
    // As torchrun sets them, so SPMD-style code inside a worker finds its place.
    RANK: String(opts.nodeRank * opts.nprocPerNode + localRank),
    LOCAL_RANK: String(localRank),
    WORLD_SIZE: String(opts.worldSize),
    LOCAL_WORLD_SIZE: String(opts.nprocPerNode),
    GROUP_RANK: String(opts.nodeRank),
    MASTER_ADDR: opts.masterAddr,
    MASTER_PORT: String(storePort),
    ...(opts.shareDevices
      ? sharedDeviceEnv(
          `gpugroup-${process.pid}-${opts.nodeRank}-${localRank}`,
          (name) => opts.env[name] ?? process.env[name],
        )
      : {}),
    // Host↔device copies at the link's speed (non-temporal memcpy into pinned staging).
    ...copyTunablesEnv({ GLIBC_TUNABLES: process.env.GLIBC_TUNABLES, ...opts.env }),
  };
}

/**
 * NCCL refuses two ranks of one host on one GPU ("Duplicate GPU detected"). A host id
 * of its own per rank process (`hostId`) makes each rank a host of its own, reached
 * through the socket transport on loopback; the user's own NCCL settings (`given`) win.
 */
export function sharedDeviceEnv(hostId: string, given: (name: string) => string | undefined): Record<string, string> {
  return {
    NCCL_HOSTID: hostId,
    NCCL_SOCKET_IFNAME: given('NCCL_SOCKET_IFNAME') ?? 'lo',
    NCCL_IB_DISABLE: given('NCCL_IB_DISABLE') ?? '1',
  };
}

/**
 * Launches this node's rank actors (one per local rank, a child process or a worker
 * thread) and resolves with the {@link Group} once every one of them has connected to
 * the store and built its world group and communicators.
 *
 * Throws InvalidArgumentError (naming the option) before starting anything; rejects
 * with RankFailedError when a rank dies during startup and with CallTimeoutError
 * (fn `launchGroup`, the first rank not ready) past `startupTimeoutMs`.
 */
export async function launchGroup(options: LaunchOptions): Promise<Group> {
  const opts = resolveOptions(options);
  const { backend, env: backendEnv } = resolveBackend(opts);
  const server =
    opts.nodeRank === 0 ? await TcpStoreServer.listen({ host: opts.masterAddr, port: opts.masterPort }) : null;
  const storePort = server?.port ?? opts.masterPort;
  const actors: Actor[] = [];
  const ready = new Set<number>();
  const startupCauses = new Map<number, Error>();
  let group: Group | null = null;
  let failStartup: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (failStartup = reject));
  failed.catch(() => undefined);
  let allReady: () => void = () => undefined;
  const everyoneReady = new Promise<void>((resolve) => (allReady = resolve));
  let timer: NodeJS.Timeout | undefined;
  try {
    for (let localRank = 0; localRank < opts.nprocPerNode; localRank++) {
      const rank = opts.nodeRank * opts.nprocPerNode + localRank;
      const env = rankEnv(opts, backendEnv, storePort, localRank);
      const channel = opts.mode === 'process' ? spawnProcess(env, opts.workerUrl) : spawnThread(env, opts.workerUrl);
      let markExited: () => void = () => undefined;
      const actor: Actor = { rank, channel, alive: true, exited: new Promise<void>((r) => (markExited = r)) };
      actors.push(actor);
      channel.onMessage((msg) => {
        if (group) return group.onRankMessage(rank, msg);
        if (msg.kind === 'ready') {
          ready.add(rank);
          if (ready.size === opts.nprocPerNode) allReady();
        } else if (msg.kind === 'fatal') startupCauses.set(rank, decodeError(msg.error));
      });
      channel.onExit((code, signal, error) => {
        actor.alive = false;
        markExited();
        if (group) return group.onRankExit(rank, code, signal, error);
        const cause = startupCauses.get(rank) ?? error;
        failStartup(new RankFailedError(rank, code, signal, `during startup${cause ? `: ${cause.message}` : ''}`));
      });
      const init: RankInit = {
        rank,
        localRank,
        worldSize: opts.worldSize,
        nodeRank: opts.nodeRank,
        device: backend === 'nccl' ? `cuda:${opts.devices[localRank]}` : 'cpu',
        backend,
        mode: opts.mode,
        storeHost: opts.masterAddr,
        storePort,
        workerUrl: opts.workerUrl,
        timeoutMs: opts.timeoutMs,
        startupTimeoutMs: opts.startupTimeoutMs,
        tensorParallelSize: opts.tensorParallelSize,
        pipelineParallelSize: opts.pipelineParallelSize,
        cpus: opts.cpus?.[localRank] ?? null,
      };
      channel.send({ kind: 'init', init });
    }
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const late = actors.find((a) => !ready.has(a.rank))?.rank ?? -1;
        reject(new CallTimeoutError(late, 'launchGroup', opts.startupTimeoutMs));
      }, opts.startupTimeoutMs);
    });
    await Promise.race([everyoneReady, failed, deadline]);
  } catch (err) {
    await stopActors(actors, FAILED_LAUNCH_GRACE_MS);
    await server?.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  group = new Group(opts, backend, actors, server, storePort);
  return group;
}
