/** src/weights/: the trainer → inference weight transfer engine (vllm/distributed/weight_transfer/), packed and unpacked. */
export { WeightTransferEngine, NcclWeightTransferEngine } from './engine.ts';
export type {
  LoadWeights,
  WeightTransferParallelInfo,
  NcclWeightTransferEngineOptions,
  RankLike,
  TrainerInitOptions,
  TrainerSendArgs,
} from './engine.ts';
export { WeightTransferGroup } from './transfer-group.ts';
export type { WeightTransferGroupOptions } from './transfer-group.ts';
export {
  DEFAULT_PACKED_BUFFER_SIZE_BYTES,
  DEFAULT_PACKED_NUM_BUFFERS,
  parseNcclInitInfo,
  parseNcclUpdateInfo,
} from './types.ts';
export type {
  NcclWeightTransferInitInfo,
  NcclWeightTransferUpdateInfo,
  NcclWeightTransferUpdateInput,
} from './types.ts';
export { planPackedBuffers } from './packing.ts';
export { tensorBytes } from '../tensor/index.ts';
export type { TensorSpec, PackedSlice, PackedBufferPlan } from './packing.ts';
export { packedBroadcastProducer, packedBroadcastConsumer } from './packed-broadcast.ts';
export type { BroadcastCommunicator, PackedBroadcastOptions, NamedTensors } from './packed-broadcast.ts';
export { describeDisagreement } from './control.ts';
export type { UpdateAnnouncement } from './control.ts';
export { registerWeightTransferEngine, createWeightTransferEngine, availableWeightTransferEngines } from './factory.ts';
export type { WeightTransferEngineClass } from './factory.ts';
export { WeightTransferNotInitializedError, WeightTransferMismatchError } from '../errors.ts';
