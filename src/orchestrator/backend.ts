/**
 * Coordinator-side backend choice: the one place that decides between NCCL and the
 * CPU backend and prepares what the ranks need for it (`backend: 'auto'`
 * is nccl when enough GPUs are visible and libnccl loads).
 */
import { cuda, cudaDeviceCount, nccl, ncclAvailable } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import type { ResolvedOptions } from './options.ts';

/** The backend the ranks will use, and environment variables they need for it. */
export interface BackendChoice {
  backend: 'nccl' | 'cpu';
  env: Record<string, string>;
}

/** What this node has: the GPUs the CUDA runtime sees and whether libnccl loads. */
export interface NodeDevices {
  gpus: number;
  ncclLoads: () => boolean;
}

/**
 * The backend for `requested` on a node with `node.gpus` GPUs, for ranks on the CUDA
 * ordinals `devices`: 'auto' is nccl when every ordinal is visible and libnccl loads
 * (one GPU and a world of 1: nccl), else cpu; 'nccl' with an ordinal that is not
 * visible is an InvalidArgumentError('devices').
 */
export function chooseBackend(
  requested: 'nccl' | 'cpu' | 'auto',
  devices: readonly number[],
  node: NodeDevices,
): 'nccl' | 'cpu' {
  if (requested === 'cpu') return 'cpu';
  const needed = Math.max(...devices) + 1;
  if (requested === 'auto') return node.gpus >= needed && node.ncclLoads() ? 'nccl' : 'cpu';
  if (node.gpus < needed)
    throw new InvalidArgumentError(
      'devices',
      `backend 'nccl' needs cuda:${needed - 1}, but ${node.gpus} CUDA device${node.gpus === 1 ? ' is' : 's are'} visible`,
    );
  return 'nccl';
}

/**
 * Resolves `opts.backend` on this node. 'cpu' never touches the CUDA libraries;
 * 'nccl' throws InvalidArgumentError('devices') when a requested ordinal is not
 * visible, and LibraryNotFoundError when libnccl cannot be loaded.
 */
export function resolveBackend(opts: ResolvedOptions): BackendChoice {
  if (opts.backend === 'cpu') return { backend: 'cpu', env: {} };
  const backend = chooseBackend(opts.backend, opts.devices, { gpus: cudaDeviceCount(), ncclLoads: ncclAvailable });
  if (backend === 'cpu') return { backend, env: {} };
  // Resolve the libraries once here: ranks skip discovery, and in thread mode the main
  // thread holding them keeps a worker's exit from unloading them (koffi 3 unloads a library with its last handle).
  return {
    backend,
    env: {
      GPUGROUP_NCCL_SO_PATH: opts.env.GPUGROUP_NCCL_SO_PATH ?? nccl().path,
      GPUGROUP_CUDART_SO_PATH: opts.env.GPUGROUP_CUDART_SO_PATH ?? cuda().path,
    },
  };
}
