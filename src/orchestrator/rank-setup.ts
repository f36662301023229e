/**
 * Builds a rank's context before it reports ready: the store connection, this
 * rank's device, the world group with its communicator, and the TP/PP/DP/EP groups
 * (vLLM's layout). This is the one place startup work is added.
 */
import {
  getDpGroup,
  getEpGroup,
  getPpGroup,
  getTpGroup,
  initDistributedEnvironment,
  initializeModelParallel,
} from '../parallel/index.ts';
import { lastErrno, libc } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { TcpStoreClient } from '../store/index.ts';
import { currentStream, parseDevice } from '../tensor/index.ts';
import type { RankContext } from './context.ts';
import type { RankInit } from './protocol.ts';

/** Pins the calling thread (the rank's) to `cpus`; InvalidArgumentError naming `cpus` where Linux refuses. */
function pinThread(cpus: number[]): void {
  // A cpu_set_t of at least CPU_SETSIZE (1024) bits, in whole 64-bit words, holding the highest CPU.
  const mask = new Uint8Array(Math.max(128, Math.ceil((Math.max(...cpus) + 1) / 64) * 8));
  for (const c of cpus) mask[c >> 3] |= 1 << (c & 7);
  if (libc().sched_setaffinity(0, mask.byteLength, mask) !== 0) {
    throw new InvalidArgumentError(
      'cpus',
      `sched_setaffinity to CPUs ${cpus.join(',')} failed (errno ${lastErrno()}: EINVAL when none of them is allowed to this process)`,
    );
  }
}

/**
 * Runs inside each rank before it reports ready; everything a worker function may
 * rely on is built here. `abortSignal` fires when the coordinator announces a dead
 * peer or a shutdown; communicators hook their abort (ncclCommAbort) into it.
 */
export async function setupRank(init: RankInit, abortSignal: AbortSignal): Promise<RankContext> {
  // First, so that every thread started from here on (NCCL's among them) inherits the set.
  if (init.cpus) pinThread(init.cpus);
  const store = await TcpStoreClient.connect({
    host: init.storeHost,
    port: init.storePort,
    timeoutMs: init.startupTimeoutMs,
  });
  const world = await initDistributedEnvironment({
    rank: init.rank,
    worldSize: init.worldSize,
    localRank: init.localRank,
    backend: init.backend,
    deviceOrdinal: parseDevice(init.device) ?? undefined,
    timeoutMs: init.timeoutMs,
    startupTimeoutMs: init.startupTimeoutMs,
    store,
    abortSignal,
  });
  await initializeModelParallel({
    tensorParallelSize: init.tensorParallelSize,
    pipelineParallelSize: init.pipelineParallelSize,
  });
  const communicator = world.deviceCommunicator;
  return {
    rank: init.rank,
    worldSize: init.worldSize,
    localRank: init.localRank,
    nodeRank: init.nodeRank,
    device: init.device,
    backend: init.backend,
    timeoutMs: init.timeoutMs,
    store,
    processGroup: world.cpuGroup,
    communicator,
    world,
    tp: getTpGroup(),
    pp: getPpGroup(),
    dp: getDpGroup(),
    ep: getEpGroup(),
    abortSignal,
    // The world communicator's wait knows its failures; without one, wait on the stream.
    synchronize: () =>
      communicator?.synchronize() ??
      (init.backend === 'nccl' ? currentStream().synchronize(init.timeoutMs) : Promise.resolve()),
  };
}
