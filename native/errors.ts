/**
 * Errors raised by the FFI layer. Every error of the package derives from
 * {@link GpuGroupError}, which carries a stable `code` a caller can branch on
 * (undici-style error classes).
 */

/** Base class of every gpugroup error. `code` is stable across versions. */
export class GpuGroupError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A shared library (libnccl, libcudart) could not be found or loaded. */
export class LibraryNotFoundError extends GpuGroupError {
  readonly library: string;
  readonly tried: string[];
  /** The variable that forces a path; empty where there is none (libc). */
  readonly envVar: string;
  constructor(library: string, tried: string[], envVar: string, detail: string) {
    super(
      'GPUGROUP_LIBRARY_NOT_FOUND',
      `${library} could not be loaded. Tried:\n  ${tried.join('\n  ')}\n` +
        (envVar ? `${detail}\nSet ${envVar} to the full path of the library to use.` : detail),
    );
    this.library = library;
    this.tried = tried;
    this.envVar = envVar;
  }
}

/** A NCCL call returned a result other than ncclSuccess. */
export class NcclError extends GpuGroupError {
  /** ncclResult_t value. */
  readonly result: number;
  /** Symbolic name of the result, e.g. `ncclInvalidArgument`. */
  readonly resultName: string;
  /** The C function that failed. */
  readonly call: string;
  constructor(result: number, resultName: string, call: string, libraryMessage: string) {
    super('GPUGROUP_NCCL_ERROR', `${call} failed: ${resultName} (${result}): ${libraryMessage}`);
    this.result = result;
    this.resultName = resultName;
    this.call = call;
  }
}

/** A CUDA runtime call returned a cudaError_t other than cudaSuccess. */
export class CudaError extends GpuGroupError {
  /** cudaError_t value. */
  readonly result: number;
  /** Symbolic name from cudaGetErrorName, e.g. `cudaErrorInsufficientDriver`. */
  readonly resultName: string;
  readonly call: string;
  constructor(result: number, resultName: string, call: string, libraryMessage: string) {
    super('GPUGROUP_CUDA_ERROR', `${call} failed: ${resultName} (${result}): ${libraryMessage}`);
    this.result = result;
    this.resultName = resultName;
    this.call = call;
  }
}

/** A cuBLAS call returned a cublasStatus_t other than CUBLAS_STATUS_SUCCESS. */
export class CublasError extends GpuGroupError {
  /** cublasStatus_t value. */
  readonly result: number;
  /** Symbolic name, e.g. `CUBLAS_STATUS_INVALID_VALUE`. */
  readonly resultName: string;
  readonly call: string;
  constructor(result: number, resultName: string, call: string, libraryMessage: string) {
    super('GPUGROUP_CUBLAS_ERROR', `${call} failed: ${resultName} (${result}): ${libraryMessage}`);
    this.result = result;
    this.resultName = resultName;
    this.call = call;
  }
}

/** An NVRTC call returned an nvrtcResult other than NVRTC_SUCCESS (a failed compile is a KernelCompileError). */
export class NvrtcError extends GpuGroupError {
  /** nvrtcResult value. */
  readonly result: number;
  readonly call: string;
  constructor(result: number, call: string, libraryMessage: string) {
    super('GPUGROUP_NVRTC_ERROR', `${call} failed: ${libraryMessage} (${result})`);
    this.result = result;
    this.call = call;
  }
}

/** A CUDA driver API call returned a CUresult other than CUDA_SUCCESS. */
export class CudaDriverError extends GpuGroupError {
  /** CUresult value. */
  readonly result: number;
  /** Symbolic name from cuGetErrorName, e.g. `CUDA_ERROR_INVALID_IMAGE`. */
  readonly resultName: string;
  readonly call: string;
  constructor(result: number, resultName: string, call: string, libraryMessage: string) {
    super('GPUGROUP_CUDA_DRIVER_ERROR', `${call} failed: ${resultName} (${result}): ${libraryMessage}`);
    this.result = result;
    this.resultName = resultName;
    this.call = call;
  }
}
