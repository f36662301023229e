// Where the multi-rank GPU tests run: min(4, GPUs) ranks, one GPU each. On a machine with
// one GPU, GPUGROUP_TEST_SHARED_RANKS=N rehearses them with N process ranks sharing it
// (launchGroup's shareDevices: real NCCL over its socket transport, correct but slow);
// thread-mode cases and the examples skip there.
import { cudaDeviceCount } from '../../native/index.ts';

/** CUDA devices visible to this process. */
export const gpus = cudaDeviceCount();
const shared = gpus === 1 ? Number(process.env.GPUGROUP_TEST_SHARED_RANKS ?? 0) : 0;
/** True when the ranks of a test share one GPU. */
export const rehearsal = Number.isInteger(shared) && shared >= 2;
/** Ranks of the multi-rank tests (below 2 they skip). */
export const world = rehearsal ? Math.min(4, shared) : Math.min(4, gpus);
/** Modes the multi-rank tests run in: thread ranks of one process cannot pose as separate NCCL hosts. */
export const gpuModes: readonly ('process' | 'thread')[] = rehearsal ? ['process'] : ['process', 'thread'];

if (rehearsal) {
  // This test process takes part in NCCL groups too (the weights trainer): a host of its own.
  process.env.NCCL_HOSTID = `gpugroup-test-${process.pid}`;
  process.env.NCCL_SOCKET_IFNAME ??= 'lo';
  process.env.NCCL_IB_DISABLE ??= '1';
}

/** launchGroup's placement of `n` local ranks on consecutive GPUs from `first` (all on GPU 0 in a rehearsal). */
export function placement(n: number, first = 0): { devices: number[]; shareDevices?: boolean } {
  if (rehearsal) return { devices: Array<number>(n).fill(0), shareDevices: true };
  return { devices: Array.from({ length: n }, (_, i) => first + i) };
}

/** The device of local rank `r` under {@link placement}. */
export function deviceOf(r: number, first = 0): string {
  return rehearsal ? 'cuda:0' : `cuda:${first + r}`;
}
