/**
 * libcudart through koffi: the runtime calls gpugroup needs, as data. Pointers and
 * handles (streams, events, graphs) are BigInt. Out-parameters are typed arrays
 * (`BigUint64Array(1)` for `T**`, `Int32Array(1)` for `int*`), which koffi passes
 * ≈5× cheaper than `_Out_` arrays. Every call is synchronous on the
 * calling thread: CUDA's current device is per host thread (CUDA Runtime API: cudaSetDevice).
 */
import { CudaError } from './errors.ts';
import { bindTable, type ProtoRow } from './bind.ts';
import { loadLibrary, namedStruct, type LibrarySpec } from './load.ts';

/** cudaErrorNotReady: a query found work still pending; not a failure. */
export const cudaErrorNotReady = 600;

/** cudaMemcpyKind values. */
export const MemcpyKind = { HostToHost: 0, HostToDevice: 1, DeviceToHost: 2, DeviceToDevice: 3, Default: 4 } as const;
/** cudaStreamCaptureMode values. */
export const CaptureMode = { Global: 0, ThreadLocal: 1, Relaxed: 2 } as const;
/** cudaStreamCaptureStatus values. */
export const CaptureStatus = { None: 0, Active: 1, Invalidated: 2 } as const;
/** cudaMemPoolAttr values. */
export const MemPoolAttr = { releaseThreshold: 4 } as const;
/** Flags for cudaStreamCreateWithFlags / cudaEventCreateWithFlags / cudaIpcOpenMemHandle. */
export const Flags = {
  streamNonBlocking: 1,
  eventDisableTiming: 2,
  ipcLazyEnablePeerAccess: 1,
} as const;

const spec: LibrarySpec = {
  name: 'libcudart',
  envVar: 'GPUGROUP_CUDART_SO_PATH',
  sonames: ['libcudart.so.13', 'libcudart.so.12'],
  pythonRelative: [
    'nvidia/cu13/lib/libcudart.so.13',
    'nvidia/cuda_runtime/lib/libcudart.so.13',
    'nvidia/cuda_runtime/lib/libcudart.so.12',
  ],
};

const table: readonly ProtoRow[] = [
  { proto: 'const char *cudaGetErrorName(int error)', returns: 'value' },
  { proto: 'const char *cudaGetErrorString(int error)', returns: 'value' },
  { proto: 'int cudaRuntimeGetVersion(int *version)' },
  { proto: 'int cudaDriverGetVersion(int *version)' },
  { proto: 'int cudaGetDeviceCount(int *count)' },
  { proto: 'int cudaGetDevice(int *device)' },
  { proto: 'int cudaSetDevice(int device)' },
  { proto: 'int cudaDeviceSynchronize()' },
  { proto: 'int cudaDeviceGetPCIBusId(char *pciBusId, int len, int device)' },
  { proto: 'int cudaDeviceCanAccessPeer(int *canAccess, int device, int peerDevice)' },
  { proto: 'int cudaMemGetInfo(size_t *free, size_t *total)' },
  { proto: 'int cudaMalloc(void *devPtrOut, size_t size)' },
  { proto: 'int cudaFree(void *devPtr)' },
  { proto: 'int cudaMallocAsync(void *devPtrOut, size_t size, void *stream)' },
  { proto: 'int cudaFreeAsync(void *devPtr, void *stream)' },
  { proto: 'int cudaMallocHost(void *ptrOut, size_t size)' },
  { proto: 'int cudaFreeHost(void *ptr)' },
  { proto: 'int cudaDeviceGetDefaultMemPool(void *memPoolOut, int device)' },
  { proto: 'int cudaMemPoolSetAttribute(void *memPool, int attr, void *value)' },
  { proto: 'int cudaMemcpy(void *dst, const void *src, size_t count, int kind)' },
  { proto: 'int cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind, void *stream)' },
  {
    proto:
      'int cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, ' +
      'size_t width, size_t height, int kind, void *stream)',
  },
  { proto: 'int cudaMemsetAsync(void *devPtr, int value, size_t count, void *stream)' },
  { proto: 'int cudaStreamCreateWithFlags(void *streamOut, unsigned int flags)' },
  { proto: 'int cudaStreamQuery(void *stream)', okCodes: [cudaErrorNotReady] },
  { proto: 'int cudaStreamSynchronize(void *stream)' },
  { proto: 'int cudaStreamDestroy(void *stream)' },
  { proto: 'int cudaStreamWaitEvent(void *stream, void *event, unsigned int flags)' },
  { proto: 'int cudaEventCreateWithFlags(void *eventOut, unsigned int flags)' },
  { proto: 'int cudaEventRecord(void *event, void *stream)' },
  { proto: 'int cudaEventQuery(void *event)', okCodes: [cudaErrorNotReady] },
  { proto: 'int cudaEventSynchronize(void *event)' },
  { proto: 'int cudaEventElapsedTime(float *ms, void *start, void *end)' },
  { proto: 'int cudaEventDestroy(void *event)' },
  { proto: 'int cudaStreamBeginCapture(void *stream, int mode)' },
  { proto: 'int cudaStreamEndCapture(void *stream, void *graphOut)' },
  { proto: 'int cudaStreamIsCapturing(void *stream, int *status)' },
  { proto: 'int cudaThreadExchangeStreamCaptureMode(int *mode)' },
  { proto: 'int cudaGraphInstantiate(void *execOut, void *graph, unsigned long long flags)' },
  { proto: 'int cudaGraphLaunch(void *exec, void *stream)' },
  { proto: 'int cudaGraphExecDestroy(void *exec)' },
  { proto: 'int cudaGraphDestroy(void *graph)' },
  { proto: 'int cudaIpcGetMemHandle(void *handleOut, void *devPtr)' },
  { proto: 'int cudaIpcOpenMemHandle(void *devPtrOut, cudaIpcMemHandle_t handle, unsigned int flags)' },
  { proto: 'int cudaIpcCloseMemHandle(void *devPtr)' },
];

type Ptr = bigint | null;
type Out64 = BigUint64Array;
type Out32 = Int32Array;

/**
 * The bound runtime. Status functions return 0 (or an allowed code such as
 * {@link cudaErrorNotReady}) and throw {@link CudaError} otherwise.
 */
export interface CudaRuntime {
  /** Path the library was loaded from. */
  path: string;
  cudaGetErrorName(error: number): string;
  cudaGetErrorString(error: number): string;
  cudaRuntimeGetVersion(out: Out32): number;
  cudaDriverGetVersion(out: Out32): number;
  cudaGetDeviceCount(out: Out32): number;
  cudaGetDevice(out: Out32): number;
  cudaSetDevice(device: number): number;
  cudaDeviceSynchronize(): number;
  cudaDeviceGetPCIBusId(buf: Uint8Array, len: number, device: number): number;
  cudaDeviceCanAccessPeer(out: Out32, device: number, peer: number): number;
  cudaMemGetInfo(free: Out64, total: Out64): number;
  cudaMalloc(out: Out64, bytes: number | bigint): number;
  cudaFree(ptr: Ptr): number;
  cudaMallocAsync(out: Out64, bytes: number | bigint, stream: Ptr): number;
  cudaFreeAsync(ptr: Ptr, stream: Ptr): number;
  cudaMallocHost(out: Out64, bytes: number | bigint): number;
  cudaFreeHost(ptr: Ptr): number;
  cudaDeviceGetDefaultMemPool(out: Out64, device: number): number;
  /** `value` points at the attribute's value, e.g. a BigUint64Array(1) for the release threshold. */
  cudaMemPoolSetAttribute(pool: Ptr, attr: number, value: ArrayBufferView): number;
  cudaMemcpy(dst: Ptr | ArrayBufferView, src: Ptr | ArrayBufferView, bytes: number | bigint, kind: number): number;
  cudaMemcpyAsync(
    dst: Ptr | ArrayBufferView,
    src: Ptr | ArrayBufferView,
    bytes: number | bigint,
    kind: number,
    stream: Ptr,
  ): number;
  cudaMemcpy2DAsync(
    dst: Ptr,
    dpitch: number,
    src: Ptr,
    spitch: number,
    width: number,
    height: number,
    kind: number,
    stream: Ptr,
  ): number;
  cudaMemsetAsync(ptr: Ptr, value: number, bytes: number | bigint, stream: Ptr): number;
  cudaStreamCreateWithFlags(out: Out64, flags: number): number;
  cudaStreamQuery(stream: Ptr): number;
  cudaStreamSynchronize(stream: Ptr): number;
  cudaStreamDestroy(stream: Ptr): number;
  cudaStreamWaitEvent(stream: Ptr, event: Ptr, flags: number): number;
  cudaEventCreateWithFlags(out: Out64, flags: number): number;
  cudaEventRecord(event: Ptr, stream: Ptr): number;
  cudaEventQuery(event: Ptr): number;
  cudaEventSynchronize(event: Ptr): number;
  cudaEventElapsedTime(ms: Float32Array, start: Ptr, end: Ptr): number;
  cudaEventDestroy(event: Ptr): number;
  cudaStreamBeginCapture(stream: Ptr, mode: number): number;
  cudaStreamEndCapture(stream: Ptr, graphOut: Out64): number;
  cudaStreamIsCapturing(stream: Ptr, status: Out32): number;
  cudaThreadExchangeStreamCaptureMode(mode: Out32): number;
  cudaGraphInstantiate(execOut: Out64, graph: Ptr, flags: number): number;
  cudaGraphLaunch(exec: Ptr, stream: Ptr): number;
  cudaGraphExecDestroy(exec: Ptr): number;
  cudaGraphDestroy(graph: Ptr): number;
  /** `handleOut` receives the 64-byte cudaIpcMemHandle_t. */
  cudaIpcGetMemHandle(handleOut: Uint8Array, ptr: Ptr): number;
  cudaIpcOpenMemHandle(out: Out64, handle: { reserved: Uint8Array }, flags: number): number;
  cudaIpcCloseMemHandle(ptr: Ptr): number;
}

let runtime: CudaRuntime | undefined;

/**
 * The CUDA runtime of this thread, loaded on first use. Throws
 * {@link LibraryNotFoundError} when libcudart cannot be found.
 */
export function cuda(): CudaRuntime {
  if (runtime) return runtime;
  const { lib, path } = loadLibrary(spec);
  namedStruct('cudaIpcMemHandle_t', { reserved: 'uint8_t [64]' });
  let bound: Record<string, (...args: never[]) => unknown> = {};
  const makeError = (code: number, call: string): CudaError => {
    const name = bound.cudaGetErrorName(code as never) as string;
    const text = bound.cudaGetErrorString(code as never) as string;
    return new CudaError(code, name, call, text);
  };
  bound = bindTable(lib, table, makeError);
  runtime = Object.assign(bound, { path }) as unknown as CudaRuntime;
  return runtime;
}

/**
 * Number of CUDA devices visible to this process; 0 when there is no driver, no
 * device or no libcudart. Never throws: tests and `backend: 'auto'` use it to decide.
 */
export function cudaDeviceCount(): number {
  try {
    const out = new Int32Array(1);
    cuda().cudaGetDeviceCount(out);
    return out[0];
  } catch {
    return 0;
  }
}

/**
 * The few driver API calls (libcuda) the runtime lacks. Runtime device pointers and
 * streams are valid here (same primary context).
 * - cuMemsetD32Async: a fill of any 4-byte pattern, stream ordered, with no host buffer
 *   and no kernel of ours (the runtime's memset takes a byte value only).
 * - cuMemcpyBatchAsync_v2 (CUDA 13 drivers; absent before): many device copies in one
 *   call, stream ordered as a whole. `attrs` is one CUmemcpyAttributes (24 bytes).
 */
export interface CudaDriver {
  cuMemsetD32Async(dst: bigint, value: number, count: number, stream: bigint): number;
  cuMemcpyBatchAsync_v2?(
    dsts: BigUint64Array,
    srcs: BigUint64Array,
    sizes: BigUint64Array,
    count: number,
    attrs: Int32Array,
    attrsIdxs: BigUint64Array,
    numAttrs: number,
    stream: bigint,
  ): number;
  /** The base and size of the allocation that holds `ptr` (CUDA IPC exports whole allocations). */
  cuMemGetAddressRange_v2?(base: BigUint64Array, bytes: BigUint64Array, ptr: bigint): number;
  cuInit?(flags: number): number;
  cuDeviceGet?(device: Int32Array, ordinal: number): number;
  /** The device's marketing name, NUL-terminated, into `name` (`len` bytes). */
  cuDeviceGetName?(name: Uint8Array, len: number, device: number): number;
}

const driverTable: readonly ProtoRow[] = [
  { proto: 'int cuMemsetD32Async(uint64_t dst, uint32_t value, size_t count, void *stream)' },
  {
    proto:
      'int cuMemcpyBatchAsync_v2(uint64_t *dsts, uint64_t *srcs, size_t *sizes, size_t count, ' +
      'void *attrs, size_t *attrsIdxs, size_t numAttrs, void *stream)',
    optional: true,
  },
  { proto: 'int cuMemGetAddressRange_v2(uint64_t *base, size_t *size, uint64_t ptr)', optional: true },
  { proto: 'int cuInit(unsigned int flags)', optional: true },
  { proto: 'int cuDeviceGet(int *device, int ordinal)', optional: true },
  { proto: 'int cuDeviceGetName(uint8_t *name, int len, int device)', optional: true },
];

let driver: CudaDriver | null | undefined;

/** libcuda's calls, or null where the driver library cannot be loaded. */
export function cudaDriver(): CudaDriver | null {
  if (driver !== undefined) return driver;
  try {
    const lib = loadLibrary({
      name: 'libcuda',
      envVar: 'GPUGROUP_CUDA_DRIVER_SO_PATH',
      sonames: ['libcuda.so.1'],
      pythonRelative: [],
    }).lib;
    driver = bindTable(
      lib,
      driverTable,
      (code, call) => new CudaError(code, `CUresult ${code}`, call, 'driver API call failed'),
    ) as unknown as CudaDriver;
  } catch {
    driver = null;
  }
  return driver;
}

/** The name of CUDA device `ordinal` (e.g. `NVIDIA H200`), or null where the driver cannot tell. Never throws. */
export function cudaDeviceName(ordinal: number): string | null {
  const d = cudaDriver();
  if (!d?.cuInit || !d.cuDeviceGet || !d.cuDeviceGetName) return null;
  try {
    d.cuInit(0);
    const dev = new Int32Array(1);
    d.cuDeviceGet(dev, ordinal);
    const name = new Uint8Array(256);
    d.cuDeviceGetName(name, name.length, dev[0]);
    const end = name.indexOf(0);
    return new TextDecoder().decode(name.subarray(0, end < 0 ? name.length : end));
  } catch {
    return null;
  }
}
