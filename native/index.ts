/**
 * native/: libnccl, libcudart, libcuda, cuBLAS and NVRTC through koffi 3. Tables of C
 * prototypes, library discovery, return-code checking and pinning; no other logic.
 */
export {
  cuda,
  cudaDeviceCount,
  cudaDeviceName,
  cudaDriver,
  cudaErrorNotReady,
  MemcpyKind,
  CaptureMode,
  CaptureStatus,
  Flags,
  MemPoolAttr,
} from './cuda.ts';
export type { CudaRuntime, CudaDriver } from './cuda.ts';
export {
  nccl,
  ncclAvailable,
  ncclConfig,
  formatNcclVersion,
  uniqueIdFromBytes,
  ncclResultName,
  NcclResult,
  NcclDataType,
  NcclRedOp,
  NCCL_UNIQUE_ID_BYTES,
} from './nccl.ts';
export type { NcclLibrary, NcclConfigOptions, UniqueId, ReduceOp } from './nccl.ts';
export { libc, viewMemory, lastErrno, SYS_FUTEX } from './libc.ts';
export type { Libc } from './libc.ts';
export {
  GpuGroupError,
  LibraryNotFoundError,
  NcclError,
  CudaError,
  CublasError,
  NvrtcError,
  CudaDriverError,
} from './errors.ts';
export {
  cublas,
  CudaDataType,
  CublasCompute,
  CublasOp,
  CUBLAS_GEMM_DEFAULT,
  CUBLAS_DEFAULT_MATH,
} from './cublas.ts';
export type { CublasLibrary } from './cublas.ts';
export { nvrtc, NvrtcResult } from './nvrtc.ts';
export type { NvrtcLibrary } from './nvrtc.ts';
export { cudaModuleApi, ParamBlock, DeviceAttr, FuncAttr } from './cuda-module.ts';
export type { CudaModuleApi } from './cuda-module.ts';
