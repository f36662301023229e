/**
 * Graph capture for a group (parallel_state.py: graph_capture,
 * GroupCoordinator.graph_capture): the capture itself is the tensor layer's
 * (src/tensor/graph.ts); here the backend is checked.
 */
import { InvalidArgumentError } from '../errors.ts';
import { captureCudaGraph, type CudaGraph, type GraphCaptureContext } from '../tensor/index.ts';

export { CudaGraph } from '../tensor/index.ts';
export type { GraphCaptureContext } from '../tensor/index.ts';

/**
 * Captures what `fn` enqueues into a CUDA graph. Needs the NCCL backend (a CUDA
 * device); on the CPU backend it rejects with InvalidArgumentError('backend').
 */
export async function captureGraph<T>(
  backend: 'nccl' | 'cpu',
  fn: (ctx: GraphCaptureContext) => Promise<T> | T,
  context?: GraphCaptureContext,
): Promise<CudaGraph<T>> {
  if (backend !== 'nccl')
    throw new InvalidArgumentError('backend', 'graph capture needs CUDA: launch the group with the NCCL backend');
  return captureCudaGraph(fn, context);
}
