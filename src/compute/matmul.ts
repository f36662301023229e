/**
 * matmul: a [..., m, k] · b [..., k, n] → [..., m, n], float32/float16/bfloat16/float64,
 * the output in the inputs' dtype, accumulated in float32 (float64 for float64), like
 * torch.matmul. Batch dims must be equal, or b 2-D (shared by every batch). On a
 * device: cuBLAS (cublasGemmEx, or cublasGemmStridedBatchedEx for batches) on the
 * current stream; float32 runs without TF32 (torch's default for matmul).
 *
 * cuBLAS is column-major: a row-major C = A·B is the column-major Cᵀ = Bᵀ·Aᵀ, so B is
 * passed first and nothing is transposed or copied.
 */
import {
  CUBLAS_DEFAULT_MATH,
  CUBLAS_GEMM_DEFAULT,
  CublasCompute,
  CublasOp,
  CudaDataType,
  cublas,
  cuda,
} from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { type DType, Tensor, currentDevice, currentStream, sameShape } from '../tensor/index.ts';
import { outsideCapture } from './device.ts';
import { checkTensor } from './elementwise.ts';
import { asNumbers, readHost, writeHost } from './host.ts';

const TYPES: Partial<Record<DType, { data: number; compute: number; one: ArrayBufferView; zero: ArrayBufferView }>> = {
  float32: { data: CudaDataType.R_32F, compute: CublasCompute.F32, one: Float32Array.of(1), zero: Float32Array.of(0) },
  float16: { data: CudaDataType.R_16F, compute: CublasCompute.F32, one: Float32Array.of(1), zero: Float32Array.of(0) },
  bfloat16: {
    data: CudaDataType.R_16BF,
    compute: CublasCompute.F32,
    one: Float32Array.of(1),
    zero: Float32Array.of(0),
  },
  float64: { data: CudaDataType.R_64F, compute: CublasCompute.F64, one: Float64Array.of(1), zero: Float64Array.of(0) },
};

/** cuBLAS's recommended workspace on Hopper (cuBLAS docs, cublasSetWorkspace). */
const WORKSPACE_BYTES = 32 << 20;

interface Handle {
  handle: bigint;
  /** One workspace per stream: two streams' GEMMs must not share scratch memory. */
  workspaces: Map<bigint, bigint>;
}
const handles = new Map<number, Handle>();

/**
 * This thread's cuBLAS handle for the current device, bound to the current stream and
 * that stream's workspace. cublasSetStream resets the workspace to cuBLAS's own pool, so
 * the workspace is set again after it on every call; with a workspace of our own cuBLAS
 * allocates nothing during a graph capture.
 */
function boundHandle(): bigint {
  const ordinal = currentDevice();
  const stream = currentStream().handle;
  const lib = cublas();
  let h = handles.get(ordinal);
  if (!h) {
    const out = new BigUint64Array(1);
    outsideCapture(() => lib.cublasCreate_v2(out));
    lib.cublasSetMathMode(out[0], CUBLAS_DEFAULT_MATH);
    h = { handle: out[0], workspaces: new Map() };
    handles.set(ordinal, h);
  }
  let ws = h.workspaces.get(stream);
  if (ws === undefined) {
    const out = new BigUint64Array(1);
    outsideCapture(() => cuda().cudaMalloc(out, WORKSPACE_BYTES));
    ws = out[0];
    h.workspaces.set(stream, ws);
  }
  lib.cublasSetStream_v2(h.handle, stream);
  lib.cublasSetWorkspace_v2(h.handle, ws, WORKSPACE_BYTES);
  return h.handle;
}

interface Plan {
  batch: number;
  m: number;
  k: number;
  n: number;
  /** b is one matrix shared by every batch. */
  sharedB: boolean;
  shape: number[];
}

function plan(a: Tensor, b: Tensor): Plan {
  if (a.shape.length < 2 || b.shape.length < 2)
    throw new InvalidArgumentError(
      'a',
      `matmul needs 2-D or batched tensors, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`,
    );
  const [m, k] = a.shape.slice(-2);
  const [k2, n] = b.shape.slice(-2);
  if (k !== k2)
    throw new InvalidArgumentError(
      'b',
      `inner dims differ: [${a.shape.join(', ')}] · [${b.shape.join(', ')}] (${k} ≠ ${k2})`,
    );
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const sharedB = bBatch.length === 0;
  if (!sharedB && !sameShape(aBatch, bBatch))
    throw new InvalidArgumentError(
      'b',
      `batch dims [${aBatch.join(', ')}] and [${bBatch.join(', ')}] differ; b may also be 2-D (shared by every batch)`,
    );
  const batch = aBatch.reduce((x, y) => x * y, 1);
  return { batch, m, k, n, sharedB, shape: [...aBatch, m, n] };
}

function hostMatmul(a: Tensor, b: Tensor, p: Plan): Tensor {
  const av = asNumbers(readHost(a));
  const bv = asNumbers(readHost(b));
  const out = new Float64Array(p.batch * p.m * p.n);
  // float32 accumulation, as the device's: round the running sum after each step.
  const round = a.dtype === 'float64' ? (x: number) => x : Math.fround;
  for (let s = 0; s < p.batch; s++) {
    const ao = s * p.m * p.k;
    const bo = p.sharedB ? 0 : s * p.k * p.n;
    for (let i = 0; i < p.m; i++)
      for (let j = 0; j < p.n; j++) {
        let acc = 0;
        for (let q = 0; q < p.k; q++) acc = round(acc + round(av[ao + i * p.k + q] * bv[bo + q * p.n + j]));
        out[(s * p.m + i) * p.n + j] = acc;
      }
  }
  return writeHost(p.shape, a.dtype, out);
}

/** a · b (see the file header for shapes and dtypes). Stream-ordered on a device. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  const types = TYPES[a.dtype];
  if (!types)
    throw new InvalidArgumentError(
      'a',
      `matmul supports ${Object.keys(TYPES).join(', ')}; got ${a.dtype} (cast first)`,
    );
  if (b.dtype !== a.dtype) throw new InvalidArgumentError('b', `dtype ${b.dtype} differs from a's ${a.dtype}`);
  if (b.device !== a.device) throw new InvalidArgumentError('b', `on ${b.device}, a is on ${a.device}`);
  const p = plan(a, b);
  if (!a.isCuda) return hostMatmul(a, b, p);
  const ac = a.contiguous();
  const bc = b.contiguous();
  const out = Tensor.empty(p.shape, { dtype: a.dtype, device: a.device });
  if (out.numel > 0) {
    if (p.k === 0) {
      cuda().cudaMemsetAsync(out.dataPtr, 0, out.nbytes, currentStream().handle);
    } else {
      const lib = cublas();
      const h = boundHandle();
      // b, when shared, folds the batch into m: [batch·m, k] · [k, n] is one GEMM.
      const batch = p.sharedB ? 1 : p.batch;
      const m = p.sharedB ? p.batch * p.m : p.m;
      const { data, compute, one, zero } = types;
      if (batch === 1) {
        lib.cublasGemmEx(
          h,
          CublasOp.N,
          CublasOp.N,
          p.n,
          m,
          p.k,
          one,
          bc.dataPtr,
          data,
          p.n,
          ac.dataPtr,
          data,
          p.k,
          zero,
          out.dataPtr,
          data,
          p.n,
          compute,
          CUBLAS_GEMM_DEFAULT,
        );
      } else {
        lib.cublasGemmStridedBatchedEx(
          h,
          CublasOp.N,
          CublasOp.N,
          p.n,
          m,
          p.k,
          one,
          bc.dataPtr,
          data,
          p.n,
          p.k * p.n,
          ac.dataPtr,
          data,
          p.k,
          m * p.k,
          zero,
          out.dataPtr,
          data,
          p.n,
          m * p.n,
          batch,
          compute,
          CUBLAS_GEMM_DEFAULT,
        );
      }
    }
  }
  if (ac !== a) ac.dispose();
  if (bc !== b) bc.dispose();
  return out;
}
