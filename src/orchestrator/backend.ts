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

/**
 * Resolves `opts.backend` on this node. 'cpu' never touches the CUDA libraries;
 * 'nccl' throws InvalidArgumentError('devices') when a requested ordinal is not
 * visible, and LibraryNotFoundError when libnccl cannot be loaded.
 */
export function resolveBackend(opts: ResolvedOptions): BackendChoice {
  if (opts.backend === 'cpu') return { backend: 'cpu', env: {} };
  const gpus = cudaDeviceCount();
  const needed = Math.max(...opts.devices) + 1;
  if (opts.backend === 'auto' && !(gpus >= needed && ncclAvailable())) return { backend: 'cpu', env: {} };
  if (gpus < needed)
    throw new InvalidArgumentError(
      'devices',
      `backend 'nccl' needs cuda:${needed - 1}, but ${gpus} CUDA devices are visible`,
    );
  // Resolve the libraries once here: ranks skip discovery, and in thread mode the main
  // thread holding them keeps a worker's exit from unloading them (koffi 3 unloads a library with its last handle).
  return {
    backend: 'nccl',
    env: {
      GPUGROUP_NCCL_SO_PATH: opts.env.GPUGROUP_NCCL_SO_PATH ?? nccl().path,
      GPUGROUP_CUDART_SO_PATH: opts.env.GPUGROUP_CUDART_SO_PATH ?? cuda().path,
    },
  };
}
