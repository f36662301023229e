/**
 * src/compute/: math on tensors. Elementwise ops, casts, reductions and softmax from
 * NVRTC-compiled kernels, matmul through cuBLAS, user kernels from CUDA C source; on
 * the host the same ops in plain loops. Device work is enqueued on the current stream
 * and can be captured by graphCapture.
 */
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
  broadcastShape,
} from './elementwise.ts';
export { reduce, sum, mean, max, softmax } from './reduce.ts';
export type { ReduceOp, ReduceOptions } from './reduce.ts';
export { matmul } from './matmul.ts';
export { compileKernel, Kernel } from './kernel.ts';
export type { KernelArg, LaunchConfig, CompileOptions } from './kernel.ts';
export type { ParamValue, Dim3 } from './device.ts';
export { generatedKernelCount } from './device.ts';
export { erf, erfc } from './erf.ts';
