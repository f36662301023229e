/**
 * libcublas through koffi: a handle, its stream and workspace, and the two GEMM entry
 * points with a compute type (cuBLAS docs, "cublasGemmEx" and
 * "cublasGemmStridedBatchedEx"). Scalars (alpha, beta) are host pointers, the default
 * pointer mode. Optional: without cuBLAS the rest of gpugroup works, and a device
 * matmul throws LibraryNotFoundError naming libcublas.
 */
import { bindTable, type ProtoRow } from './bind.ts';
import { CublasError } from './errors.ts';
import { type LibrarySpec, loadLibrary, preloadLibrary } from './load.ts';

/** cudaDataType_t values (library_types.h). */
export const CudaDataType = { R_32F: 0, R_64F: 1, R_16F: 2, R_16BF: 14 } as const;
/** cublasComputeType_t values. */
export const CublasCompute = { F32: 68, F64: 70 } as const;
/** cublasOperation_t values. */
export const CublasOp = { N: 0, T: 1 } as const;
/** cublasGemmAlgo_t: let the library choose. */
export const CUBLAS_GEMM_DEFAULT = -1;
/** cublasMath_t: no TF32 down-conversion of float32 inputs (torch's default for matmul). */
export const CUBLAS_DEFAULT_MATH = 0;

const spec: LibrarySpec = {
  name: 'libcublas',
  envVar: 'GPUGROUP_CUBLAS_SO_PATH',
  sonames: ['libcublas.so.13', 'libcublas.so.12'],
  pythonRelative: ['nvidia/*/lib/libcublas.so.13', 'nvidia/*/lib/libcublas.so.12'],
};

const table: readonly ProtoRow[] = [
  { proto: 'const char *cublasGetStatusName(int status)', returns: 'value' },
  { proto: 'const char *cublasGetStatusString(int status)', returns: 'value' },
  { proto: 'int cublasCreate_v2(void *handleOut)' },
  { proto: 'int cublasDestroy_v2(void *handle)' },
  { proto: 'int cublasSetStream_v2(void *handle, void *stream)' },
  { proto: 'int cublasSetWorkspace_v2(void *handle, void *workspace, size_t bytes)' },
  { proto: 'int cublasSetMathMode(void *handle, int mode)' },
  {
    proto:
      'int cublasGemmEx(void *handle, int transa, int transb, int m, int n, int k, const void *alpha, const void *A, int Atype, int lda, const void *B, int Btype, int ldb, const void *beta, void *C, int Ctype, int ldc, int computeType, int algo)',
  },
  {
    proto:
      'int cublasGemmStridedBatchedEx(void *handle, int transa, int transb, int m, int n, int k, const void *alpha, const void *A, int Atype, int lda, long long strideA, const void *B, int Btype, int ldb, long long strideB, const void *beta, void *C, int Ctype, int ldc, long long strideC, int batchCount, int computeType, int algo)',
  },
];

type Ptr = bigint | null;

/** The bound cuBLAS library; status functions throw {@link CublasError}. */
export interface CublasLibrary {
  path: string;
  cublasGetStatusName(status: number): string;
  cublasGetStatusString(status: number): string;
  cublasCreate_v2(out: BigUint64Array): number;
  cublasDestroy_v2(handle: Ptr): number;
  cublasSetStream_v2(handle: Ptr, stream: Ptr): number;
  cublasSetWorkspace_v2(handle: Ptr, workspace: Ptr, bytes: number): number;
  cublasSetMathMode(handle: Ptr, mode: number): number;
  cublasGemmEx(
    handle: Ptr,
    transa: number,
    transb: number,
    m: number,
    n: number,
    k: number,
    alpha: ArrayBufferView,
    a: Ptr,
    aType: number,
    lda: number,
    b: Ptr,
    bType: number,
    ldb: number,
    beta: ArrayBufferView,
    c: Ptr,
    cType: number,
    ldc: number,
    computeType: number,
    algo: number,
  ): number;
  cublasGemmStridedBatchedEx(
    handle: Ptr,
    transa: number,
    transb: number,
    m: number,
    n: number,
    k: number,
    alpha: ArrayBufferView,
    a: Ptr,
    aType: number,
    lda: number,
    strideA: number,
    b: Ptr,
    bType: number,
    ldb: number,
    strideB: number,
    beta: ArrayBufferView,
    c: Ptr,
    cType: number,
    ldc: number,
    strideC: number,
    batchCount: number,
    computeType: number,
    algo: number,
  ): number;
}

let library: CublasLibrary | undefined;

/** cuBLAS, loaded on first use; throws LibraryNotFoundError naming libcublas and its variable. */
export function cublas(): CublasLibrary {
  if (library) return library;
  preloadLibrary({
    ...spec,
    name: 'libcublasLt',
    sonames: ['libcublasLt.so.13', 'libcublasLt.so.12'],
    pythonRelative: ['nvidia/*/lib/libcublasLt.so.13', 'nvidia/*/lib/libcublasLt.so.12'],
  });
  const { lib, path } = loadLibrary(spec);
  let bound: Record<string, (...args: never[]) => unknown> = {};
  const makeError = (code: number, call: string): CublasError =>
    new CublasError(
      code,
      bound.cublasGetStatusName(code as never) as string,
      call,
      bound.cublasGetStatusString(code as never) as string,
    );
  bound = bindTable(lib, table, makeError);
  library = Object.assign(bound, { path }) as unknown as CublasLibrary;
  return library;
}
