/**
 * gpugroup: vLLM's distributed communication layer as a TypeScript actor system.
 * The package's public face; each layer's own index.ts holds the rest.
 */
export { launchGroup, Group } from './orchestrator/index.ts';
export type { LaunchOptions, RankContext, RankExitEvent } from './orchestrator/index.ts';
export {
  Tensor,
  Stream,
  CudaEvent,
  currentStream,
  setCurrentStream,
  withStream,
  enqueueOn,
  setDevice,
  currentDevice,
  DTYPES,
  loadSafetensors,
  saveSafetensors,
  readSafetensorsInfo,
} from './tensor/index.ts';
export type {
  DType,
  TensorOptions,
  ForeignOptions,
  IpcHandle,
  LoadSafetensorsOptions,
  SafetensorsInfo,
} from './tensor/index.ts';
export {
  add,
  sub,
  mul,
  div,
  scale,
  neg,
  relu,
  gelu,
  silu,
  exp,
  cast,
  binary,
  unary,
  reduce,
  sum,
  mean,
  max,
  softmax,
  matmul,
  compileKernel,
  Kernel,
} from './compute/index.ts';
export type {
  ReduceOp as ComputeReduceOp,
  ReduceOptions,
  KernelArg,
  LaunchConfig,
  CompileOptions,
  ParamValue,
  Dim3,
} from './compute/index.ts';
export {
  TcpStoreServer,
  TcpStoreClient,
  PrefixStore,
  StatelessProcessGroup,
  freePort,
  listenInThread,
} from './store/index.ts';
export type { Store } from './store/index.ts';
export { DeviceCommunicator, NcclCommunicator, CpuCommunicator, FlightRecorder, MessageQueue } from './comm/index.ts';
export type { ReduceOp, MessageQueueOptions } from './comm/index.ts';
export {
  GroupCoordinator,
  getPpIndices,
  groupLayout,
  divide,
  ensureDivisibility,
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
  patchTensorParallelGroup,
  destroyModelParallel,
  destroyDistributedEnvironment,
  inTheSameNodeAs,
  CudaGraph,
  graphCapture,
  getDistributedEnvironment,
} from './parallel/index.ts';
export type { GraphCaptureContext } from './parallel/index.ts';
export type { TensorDict, ParallelSizes } from './parallel/index.ts';
export {
  NcclWeightTransferEngine,
  WeightTransferEngine,
  WeightTransferGroup,
  createWeightTransferEngine,
  registerWeightTransferEngine,
  availableWeightTransferEngines,
  parseNcclInitInfo,
  parseNcclUpdateInfo,
  planPackedBuffers,
  packedBroadcastProducer,
  packedBroadcastConsumer,
  DEFAULT_PACKED_BUFFER_SIZE_BYTES,
  DEFAULT_PACKED_NUM_BUFFERS,
} from './weights/index.ts';
export type {
  NcclWeightTransferInitInfo,
  NcclWeightTransferUpdateInfo,
  NcclWeightTransferEngineOptions,
  TrainerSendArgs,
  LoadWeights,
  NamedTensors,
  PackedBufferPlan,
  TensorSpec,
} from './weights/index.ts';
export { NcclPipe } from './kv/index.ts';
export type { NcclPipeOptions, KVPipeBase } from './kv/index.ts';
export * from './errors.ts';
export { cuda, nccl, cudaDeviceCount, cudaDeviceName, ncclAvailable, formatNcclVersion } from '../native/index.ts';
