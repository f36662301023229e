/**
 * Reductions over one dim (sum, mean, max) and softmax over the last dim.
 *
 * Rules (the same on the device and the host):
 * - The output has the input's dtype (torch's sum of an integer tensor is int64; here
 *   it stays the input's dtype and wraps). The reduced dim is dropped, or kept as 1
 *   with `keepdim`.
 * - float16/bfloat16/float32 accumulate in float32, float64 in float64, integer
 *   dtypes in int64. The host adds in order; the device in per-thread partial sums and
 *   then a tree, so float sums of the two agree within the rounding bound of a sum,
 *   2·(n − 1)·u·Σ|x| (u = 2⁻²⁴ in float32), not to the last bit.
 * - mean and softmax are for floating dtypes; fp8 is refused (cast).
 * - max propagates NaN, like torch.max; max over an empty dim is an error. The sum
 *   over an empty dim is 0 and its mean NaN.
 */
import { InvalidArgumentError } from '../errors.ts';
import { type DType, Tensor, parseDevice } from '../tensor/index.ts';
import { CTYPES } from './ctypes.ts';
import { BLOCK, generatedKernel, gridFor, launch } from './device.ts';
import { checkTensor } from './elementwise.ts';
import { asNumbers, readHost, writeHost } from './host.ts';
import { type ReduceSpec, reduceRowsSource, reduceStridedSource, softmaxSource } from './kernels.ts';

/** The reductions {@link reduce} knows. */
export type ReduceOp = 'sum' | 'mean' | 'max';
const REDUCE_OPS: readonly string[] = ['sum', 'mean', 'max'];

/** Options of the reductions. */
export interface ReduceOptions {
  /** Keep the reduced dim as size 1 (default false). */
  keepdim?: boolean;
}

function checkDtype(op: string, dtype: DType, argument: string): void {
  if (dtype.startsWith('float8'))
    throw new InvalidArgumentError(argument, `${op} is not defined on ${dtype}; cast to float32 or bfloat16 first`);
  if ((op === 'mean' || op === 'softmax') && !CTYPES[dtype].float)
    throw new InvalidArgumentError(argument, `${op} needs a floating dtype, got ${dtype}; cast first`);
}

function normDim(dim: number, ndim: number): number {
  if (!Number.isInteger(dim) || dim < -Math.max(ndim, 1) || dim >= Math.max(ndim, 1))
    throw new InvalidArgumentError('dim', `dim ${dim} is out of range for a tensor of ${ndim} dims`);
  return dim < 0 ? dim + Math.max(ndim, 1) : dim;
}

function spec(op: ReduceOp, dtype: DType, name: string): ReduceSpec {
  const t = CTYPES[dtype];
  if (op === 'max') {
    const acc = t.compute;
    return {
      name,
      in: t,
      out: t,
      acc,
      init: `(${acc})${t.lowest}`,
      combine: '((q > p || q != q) ? q : p)',
      finish: 'r',
    };
  }
  return {
    name,
    in: t,
    out: t,
    acc: t.accumulate,
    init: '0',
    combine: 'p + q',
    finish: op === 'mean' ? `r / (${t.accumulate})n` : 'r',
  };
}

/** max that propagates NaN (the device's combine: q > p || q != q ? q : p). */
function maxNaN(r: number, e: number): number {
  return Number.isNaN(r) ? r : e > r || Number.isNaN(e) ? e : r;
}

/** Host reduction of `x` viewed as [outer, n, inner] over its middle dim. */
function hostReduce(op: ReduceOp, x: Tensor, outer: number, n: number, inner: number, shape: number[]): Tensor {
  const values = readHost(x);
  if (values instanceof BigInt64Array) {
    const out = new BigInt64Array(outer * inner);
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < inner; j++) {
        let r = op === 'max' ? -(1n << 63n) : 0n;
        for (let p = 0; p < n; p++) {
          const v = values[(o * n + p) * inner + j];
          r = op === 'max' ? (v > r ? v : r) : BigInt.asIntN(64, r + v);
        }
        out[o * inner + j] = r;
      }
    return writeHost(shape, x.dtype, out);
  }
  const v = asNumbers(values);
  const out = new Float64Array(outer * inner);
  // float32 accumulation, as the device's: round the running sum after each step.
  const round = x.dtype === 'float64' ? (s: number) => s : Math.fround;
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < inner; j++) {
      let r = op === 'max' ? -Infinity : 0;
      for (let p = 0; p < n; p++) {
        const e = v[(o * n + p) * inner + j];
        r = op === 'max' ? maxNaN(r, e) : round(r + e);
      }
      out[o * inner + j] = op === 'mean' ? r / n : r;
    }
  return writeHost(shape, x.dtype, out);
}

/** `op` (sum, mean or max) of `x` over `dim`. Stream-ordered on a device. */
export function reduce(op: ReduceOp, x: Tensor, dim: number, opts: ReduceOptions = {}): Tensor {
  if (!REDUCE_OPS.includes(op))
    throw new InvalidArgumentError('op', `unknown reduction '${op}'; known: ${REDUCE_OPS.join(', ')}`);
  checkTensor(x, 'x');
  checkDtype(op, x.dtype, 'x');
  const d = normDim(dim, x.shape.length);
  const dims = x.shape.length === 0 ? [1] : [...x.shape];
  const n = dims[d];
  if (op === 'max' && n === 0) throw new InvalidArgumentError('x', `max over dim ${d} of size 0 has no identity`);
  const outer = dims.slice(0, d).reduce((a, b) => a * b, 1);
  const inner = dims.slice(d + 1).reduce((a, b) => a * b, 1);
  const shape = opts.keepdim ? dims.map((s, i) => (i === d ? 1 : s)) : dims.filter((_, i) => i !== d);
  if (x.shape.length === 0 && !opts.keepdim) shape.length = 0;
  if (!x.isCuda) return hostReduce(op, x, outer, n, inner, shape);
  const xc = x.contiguous();
  const out = Tensor.empty(shape, { dtype: x.dtype, device: x.device });
  const ordinal = parseDevice(x.device) as number;
  if (out.numel > 0) {
    if (inner === 1) {
      const name = `gg_${op}_rows_${x.dtype}`;
      const fn = generatedKernel(ordinal, name, () => reduceRowsSource(spec(op, x.dtype, name)));
      const grid = Math.max(1, Math.min(outer, deviceRows(ordinal)));
      launch(fn, grid, BLOCK, 0, [
        { ptr: out.dataPtr },
        { ptr: n === 0 ? 0n : xc.dataPtr },
        { i64: outer },
        { i64: n },
      ]);
    } else {
      const name = `gg_${op}_strided_${x.dtype}`;
      const fn = generatedKernel(ordinal, name, () => reduceStridedSource(spec(op, x.dtype, name)));
      launch(fn, gridFor(ordinal, outer * inner), BLOCK, 0, [
        { ptr: out.dataPtr },
        { ptr: n === 0 ? 0n : xc.dataPtr },
        { i64: outer },
        { i64: n },
        { i64: inner },
      ]);
    }
  }
  if (xc !== x) xc.dispose();
  return out;
}

/** Blocks for one-block-per-row kernels: the rest are grid-strided. */
function deviceRows(ordinal: number): number {
  return gridFor(ordinal, Number.MAX_SAFE_INTEGER);
}

/** Sum over `dim`. */
export const sum = (x: Tensor, dim: number, opts?: ReduceOptions): Tensor => reduce('sum', x, dim, opts);
/** Mean over `dim` (floating dtypes). */
export const mean = (x: Tensor, dim: number, opts?: ReduceOptions): Tensor => reduce('mean', x, dim, opts);
/** Maximum over `dim` (values only; NaN propagates). */
export const max = (x: Tensor, dim: number, opts?: ReduceOptions): Tensor => reduce('max', x, dim, opts);

/** softmax over the last dim (`dim` must name it), computed as exp(x − max) / Σ. Floating dtypes. */
export function softmax(x: Tensor, dim = -1): Tensor {
  checkTensor(x, 'x');
  checkDtype('softmax', x.dtype, 'x');
  if (x.shape.length === 0) throw new InvalidArgumentError('x', 'softmax needs at least one dim');
  if (normDim(dim, x.shape.length) !== x.shape.length - 1)
    throw new InvalidArgumentError('dim', `softmax is over the last dim only; movedim first (got dim ${dim})`);
  const n = x.shape[x.shape.length - 1];
  const rows = n === 0 ? 0 : x.numel / n;
  if (!x.isCuda) {
    const v = asNumbers(readHost(x));
    const out = new Float64Array(v.length);
    for (let r = 0; r < rows; r++) {
      let m = -Infinity;
      for (let p = 0; p < n; p++) m = maxNaN(m, v[r * n + p]);
      let s = 0;
      for (let p = 0; p < n; p++) s += Math.exp(v[r * n + p] - m);
      for (let p = 0; p < n; p++) out[r * n + p] = Math.exp(v[r * n + p] - m) / s;
    }
    return writeHost(x.shape, x.dtype, out);
  }
  const xc = x.contiguous();
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  if (out.numel > 0) {
    const ordinal = parseDevice(x.device) as number;
    const name = `gg_softmax_${x.dtype}`;
    const fn = generatedKernel(ordinal, name, () => softmaxSource(name, CTYPES[x.dtype]));
    launch(fn, Math.max(1, Math.min(rows, deviceRows(ordinal))), BLOCK, 0, [
      { ptr: out.dataPtr },
      { ptr: xc.dataPtr },
      { i64: rows },
      { i64: n },
    ]);
  }
  if (xc !== x) xc.dispose();
  return out;
}
