/** src/tensor/: Tensor, the dtype table and conversions, devices, streams and events. */
export { Tensor, parseDevice, sameShape } from './tensor.ts';
export type { TensorOptions, ValueArray, ForeignOptions } from './tensor.ts';
export { IPC_HANDLE_BYTES } from './foreign.ts';
export type { IpcHandle } from './foreign.ts';
export {
  DTYPES,
  dtypeInfo,
  floatToHalf,
  halfToFloat,
  floatToBfloat16,
  bfloat16ToFloat,
  floatToE4m3,
  e4m3ToFloat,
  floatToE5m2,
  e5m2ToFloat,
  decodeValues,
  encodeValues,
  decodeTable,
  ncclDataType,
  tensorBytes,
} from './dtype.ts';
export type { DType, DTypeInfo, StorageArray } from './dtype.ts';
export {
  Stream,
  CudaEvent,
  currentStream,
  setCurrentStream,
  withStream,
  enqueueOn,
  setDevice,
  currentDevice,
  pollUntil,
  failStream,
  throwIfStreamFailed,
  streamDisposed,
} from './stream.ts';
export type { DeviceOrigin } from './storage.ts';
export { HostStorage, DeviceStorage, beginGraphAllocations, endGraphAllocations } from './storage.ts';
export { copyBytes } from './bytes.ts';
export { emptyPackedHost, packedLayout, PACK_ALIGN_BYTES } from './packed.ts';
export type { PackedSpec } from './packed.ts';
export { loadSafetensors, saveSafetensors, readSafetensorsInfo } from './safetensors.ts';
export type { LoadSafetensorsOptions, SafetensorsInfo, NamedTensorsInput } from './safetensors.ts';
export { MAX_HEADER_BYTES as SAFETENSORS_MAX_HEADER_BYTES } from './safetensors-header.ts';
export { CudaGraph, captureCudaGraph } from './graph.ts';
export type { GraphCaptureContext } from './graph.ts';
export { copyTunablesEnv } from './host-copy.ts';
