/**
 * The driver API calls (libcuda) that load compiled code and launch it: a module from a
 * CUBIN or PTX image, a function from it, a launch on a runtime stream (a cudaStream_t
 * is a CUstream), and the device's compute capability for NVRTC's target. The runtime
 * has made the device's primary context current (cudaSetDevice), so modules load there.
 * Kernel parameters are passed as `void **` into memory koffi allocated, which stays put
 * (cuLaunchKernel copies the values at the call, also while a graph is being captured).
 */
import koffi from 'koffi';
import { bindTable, type ProtoRow } from './bind.ts';
import { CudaDriverError } from './errors.ts';
import { loadLibrary } from './load.ts';

/** CUdevice_attribute values used here. */
export const DeviceAttr = { multiprocessorCount: 16, computeCapabilityMajor: 75, computeCapabilityMinor: 76 } as const;
/** CUfunction_attribute: the dynamic shared memory a launch may ask for. */
export const FuncAttr = { maxDynamicSharedSizeBytes: 8 } as const;

const table: readonly ProtoRow[] = [
  { proto: 'int cuGetErrorName(int error, _Out_ const char **name)', returns: 'value' },
  { proto: 'int cuGetErrorString(int error, _Out_ const char **text)', returns: 'value' },
  { proto: 'int cuInit(unsigned int flags)' },
  { proto: 'int cuDeviceGetAttribute(int *value, int attrib, int device)' },
  { proto: 'int cuModuleLoadData(void *moduleOut, const uint8_t *image)' },
  { proto: 'int cuModuleGetFunction(void *functionOut, void *module, const char *name)' },
  { proto: 'int cuModuleUnload(void *module)' },
  { proto: 'int cuFuncSetAttribute(void *fn, int attrib, int value)' },
  {
    proto:
      'int cuLaunchKernel(void *fn, unsigned int gridX, unsigned int gridY, unsigned int gridZ, unsigned int blockX, unsigned int blockY, unsigned int blockZ, unsigned int sharedMemBytes, void *stream, void *kernelParams, void *extra)',
  },
];

type Ptr = bigint | null;

/** The bound module/launch calls; status functions throw {@link CudaDriverError}. */
export interface CudaModuleApi {
  path: string;
  cuInit(flags: number): number;
  cuDeviceGetAttribute(out: Int32Array, attrib: number, device: number): number;
  cuModuleLoadData(out: BigUint64Array, image: Uint8Array): number;
  cuModuleGetFunction(out: BigUint64Array, module: Ptr, name: string): number;
  cuModuleUnload(module: Ptr): number;
  cuFuncSetAttribute(fn: Ptr, attrib: number, value: number): number;
  /** `params` is the address of a `void *[]` (see {@link ParamBlock}). */
  cuLaunchKernel(
    fn: Ptr,
    gridX: number,
    gridY: number,
    gridZ: number,
    blockX: number,
    blockY: number,
    blockZ: number,
    sharedMemBytes: number,
    stream: Ptr,
    params: Ptr,
    extra: Ptr,
  ): number;
}

let api: CudaModuleApi | undefined;

/** libcuda's module and launch calls, loaded on first use (LibraryNotFoundError naming libcuda otherwise). */
export function cudaModuleApi(): CudaModuleApi {
  if (api) return api;
  const { lib, path } = loadLibrary({
    name: 'libcuda',
    envVar: 'GPUGROUP_CUDA_DRIVER_SO_PATH',
    sonames: ['libcuda.so.1'],
    pythonRelative: [],
  });
  let bound: Record<string, (...args: never[]) => unknown> = {};
  const makeError = (code: number, call: string): CudaDriverError => {
    const name: (string | null)[] = [null];
    const text: (string | null)[] = [null];
    bound.cuGetErrorName(code as never, name as never);
    bound.cuGetErrorString(code as never, text as never);
    return new CudaDriverError(code, name[0] ?? `CUresult ${code}`, call, text[0] ?? 'driver API call failed');
  };
  bound = bindTable(lib, table, makeError);
  api = Object.assign(bound, { path }) as unknown as CudaModuleApi;
  api.cuInit(0);
  return api;
}

/**
 * Memory for one launch's kernel parameters, allocated once and reused: `slots` values
 * of up to 8 bytes each, then the `void *[]` pointing at them. Not thread-shared (koffi
 * memory is per thread like everything else here).
 */
export class ParamBlock {
  /** Address of the `void *[]` to pass as cuLaunchKernel's kernelParams. */
  readonly params: bigint;
  /** Little-endian view of the value slots (8 bytes each). */
  readonly values: DataView;
  constructor(readonly slots: number) {
    const base = koffi.alloc('uint64_t', slots * 2) as bigint;
    this.values = new DataView(koffi.view(base, slots * 16));
    this.params = base + BigInt(slots * 8);
    for (let i = 0; i < slots; i++) this.values.setBigUint64(slots * 8 + i * 8, base + BigInt(i * 8), true);
  }
}
