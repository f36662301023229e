/** src/parallel/: GroupCoordinator, parallel state, layout and pipeline helpers (vllm/distributed/parallel_state.py). */
export { GroupCoordinator } from './group-coordinator.ts';
export type { GroupCoordinatorOptions, AllGatherOptions } from './group-coordinator.ts';
export type { TensorDict } from './tensor-dict.ts';
export { groupLayout, getPpIndices, divide, ensureDivisibility } from './layout.ts';
export type { ParallelSizes, GroupLayout } from './layout.ts';
export {
  initDistributedEnvironment,
  initializeModelParallel,
  ensureModelParallelInitialized,
  modelParallelIsInitialized,
  getWorldGroup,
  getTpGroup,
  getPpGroup,
  getDpGroup,
  getEpGroup,
  getTensorModelParallelWorldSize,
  getTensorModelParallelRank,
  getPipelineModelParallelWorldSize,
  getPipelineModelParallelRank,
  getDistributedEnvironment,
  patchTensorParallelGroup,
  destroyModelParallel,
  destroyDistributedEnvironment,
  inTheSameNodeAs,
  graphCapture,
} from './state.ts';
export type { DistributedEnvironment, InitOptions } from './state.ts';
export { CudaGraph } from './graph.ts';
export type { GraphCaptureContext } from './graph.ts';
