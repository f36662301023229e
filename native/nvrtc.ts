/**
 * libnvrtc through koffi: compile CUDA C source to a CUBIN (or PTX) in memory (NVRTC
 * docs, "Basic usage"). Optional: without NVRTC the rest of gpugroup works, and compute
 * on a device throws LibraryNotFoundError naming libnvrtc.
 */
import { bindTable, type ProtoRow } from './bind.ts';
import { NvrtcError } from './errors.ts';
import { type LibrarySpec, loadLibrary, preloadLibrary } from './load.ts';

/** nvrtcResult values the callers branch on. */
export const NvrtcResult = { success: 0, compilation: 6 } as const;

const spec: LibrarySpec = {
  name: 'libnvrtc',
  envVar: 'GPUGROUP_NVRTC_SO_PATH',
  sonames: ['libnvrtc.so.13', 'libnvrtc.so.12'],
  pythonRelative: ['nvidia/*/lib/libnvrtc.so.13', 'nvidia/*/lib/libnvrtc.so.12'],
};

const table: readonly ProtoRow[] = [
  { proto: 'const char *nvrtcGetErrorString(int result)', returns: 'value' },
  { proto: 'int nvrtcVersion(int *major, int *minor)' },
  {
    proto:
      'int nvrtcCreateProgram(void *progOut, const char *src, const char *name, int numHeaders, const char **headers, const char **includeNames)',
  },
  { proto: 'int nvrtcDestroyProgram(void *progInOut)' },
  // A failed compile is returned, not thrown: the caller reads the log and raises its own error.
  {
    proto: 'int nvrtcCompileProgram(void *prog, int numOptions, const char **options)',
    okCodes: [NvrtcResult.compilation],
  },
  { proto: 'int nvrtcGetProgramLogSize(void *prog, size_t *size)' },
  { proto: 'int nvrtcGetProgramLog(void *prog, uint8_t *log)' },
  { proto: 'int nvrtcGetPTXSize(void *prog, size_t *size)' },
  { proto: 'int nvrtcGetPTX(void *prog, uint8_t *ptx)' },
  { proto: 'int nvrtcGetCUBINSize(void *prog, size_t *size)', optional: true },
  { proto: 'int nvrtcGetCUBIN(void *prog, uint8_t *cubin)', optional: true },
];

type Ptr = bigint | null;

/** The bound NVRTC library; status functions throw {@link NvrtcError}. */
export interface NvrtcLibrary {
  path: string;
  nvrtcGetErrorString(result: number): string;
  nvrtcVersion(major: Int32Array, minor: Int32Array): number;
  nvrtcCreateProgram(
    out: BigUint64Array,
    src: string,
    name: string,
    numHeaders: number,
    headers: string[] | null,
    includeNames: string[] | null,
  ): number;
  /** `prog` points at the handle (it is zeroed). */
  nvrtcDestroyProgram(prog: BigUint64Array): number;
  nvrtcCompileProgram(prog: Ptr, numOptions: number, options: string[]): number;
  nvrtcGetProgramLogSize(prog: Ptr, size: BigUint64Array): number;
  nvrtcGetProgramLog(prog: Ptr, log: Uint8Array): number;
  nvrtcGetPTXSize(prog: Ptr, size: BigUint64Array): number;
  nvrtcGetPTX(prog: Ptr, ptx: Uint8Array): number;
  nvrtcGetCUBINSize?(prog: Ptr, size: BigUint64Array): number;
  nvrtcGetCUBIN?(prog: Ptr, cubin: Uint8Array): number;
}

let library: NvrtcLibrary | undefined;

/** NVRTC, loaded on first use; throws LibraryNotFoundError naming libnvrtc and its variable. */
export function nvrtc(): NvrtcLibrary {
  if (library) return library;
  // NVRTC opens its builtins library by name at the first compile; the wheels keep it
  // beside libnvrtc, where the loader may not look.
  preloadLibrary({
    ...spec,
    name: 'libnvrtc-builtins',
    sonames: [],
    pythonRelative: ['nvidia/*/lib/libnvrtc-builtins.so.13*', 'nvidia/*/lib/libnvrtc-builtins.so.12*'],
  });
  const { lib, path } = loadLibrary(spec);
  let bound: Record<string, (...args: never[]) => unknown> = {};
  const makeError = (code: number, call: string): NvrtcError =>
    new NvrtcError(code, call, bound.nvrtcGetErrorString(code as never) as string);
  bound = bindTable(lib, table, makeError);
  library = Object.assign(bound, { path }) as unknown as NvrtcLibrary;
  return library;
}
