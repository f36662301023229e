/**
 * native/: libnccl and libcudart through koffi 3. Tables of C prototypes, library
 * discovery, return-code checking and pinning; no other logic.
 */
export {
  cuda,
  cudaDeviceCount,
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
export { GpuGroupError, LibraryNotFoundError, NcclError, CudaError } from './errors.ts';
