/**
 * CUDA C source of the generated kernels: elementwise (unary, binary, with a scalar,
 * broadcast over trailing dims, and casts), reductions over one dim, and softmax over
 * the last. Each generator returns a whole translation unit with one `extern "C"`
 * kernel, so a kernel name is enough to find it in its module. All indexing is 64-bit.
 */
import { type CType, PRELUDE } from './ctypes.ts';

/** An elementwise kernel: out[i] = expr(x = a[..], y = b[..] or the scalar s). */
export interface ElementwiseSpec {
  name: string;
  a: CType;
  /** Second tensor operand; absent for unary ops and scalar operands. */
  b?: CType;
  /** C type of the scalar parameter `s` (always present in the signature). */
  scalar: string;
  out: CType;
  /** Expression in `a.compute` over x, y (and s); its value is converted to out.compute. */
  expr: string;
  /** a and b have the output's shape (no modulo indexing). */
  same: boolean;
  /** Also move 16-byte vectors (the caller checks that every pointer is 16-byte aligned). */
  vec: boolean;
}

const sizeOf: Record<string, number> = {
  float: 4,
  double: 8,
  'unsigned short': 2,
  'unsigned char': 1,
  'signed char': 1,
  int: 4,
  'long long': 8,
};

/** Elements per 16-byte vector for the widest of `types`. */
export function vectorWidth(...types: CType[]): number {
  return 16 / Math.max(...types.map((t) => sizeOf[t.storage]));
}

/** The signature every elementwise kernel has: (out, a, b, n, na, nb, s). */
export function elementwiseSource(spec: ElementwiseSpec): string {
  const { a, b, out } = spec;
  const c = a.compute;
  const y = b ? `${b.load(spec.same ? 'b[i]' : 'b[i % nb]')}` : 's';
  const x = a.load(spec.same ? 'a[i]' : 'a[i % na]');
  const value = `${out.store(`(${out.compute})(${spec.expr})`)}`;
  const bType = b ? b.storage : 'unsigned char';
  const usesY = /\by\b/.test(spec.expr);
  let vec = '';
  if (spec.vec && spec.same) {
    const v = vectorWidth(a, out, ...(b ? [b] : []));
    const align = (t: CType) => v * sizeOf[t.storage];
    vec = `
  struct __align__(${align(a)}) VA { ${a.storage} v[${v}]; };
  struct __align__(${align(out)}) VO { ${out.storage} v[${v}]; };
  ${b ? `struct __align__(${align(b)}) VB { ${b.storage} v[${v}]; };` : ''}
  long long nv = n / ${v};
  for (long long j = tid; j < nv; j += stride) {
    VA va = ((const VA *)a)[j];
    ${b ? 'VB vb = ((const VB *)b)[j];' : ''}
    VO vo;
#pragma unroll
    for (int k = 0; k < ${v}; k++) {
      ${c} x = ${a.load('va.v[k]')};
      ${usesY ? `${c} y = ${b ? b.load('vb.v[k]') : 's'};` : ''}
      vo.v[k] = ${value};
    }
    ((VO *)out)[j] = vo;
  }
  start = nv * ${v};`;
  }
  return `${PRELUDE}
extern "C" __global__ void ${spec.name}(${out.storage} *__restrict__ out, const ${a.storage} *__restrict__ a,
    const ${bType} *__restrict__ b, long long n, long long na, long long nb, ${spec.scalar} s) {
  long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  long long stride = (long long)gridDim.x * blockDim.x;
  long long start = 0;
  (void)na; (void)nb; (void)b; (void)s;${vec}
  for (long long i = start + tid; i < n; i += stride) {
    ${c} x = ${x};
    ${usesY ? `${c} y = ${y};` : ''}
    out[i] = ${value};
  }
}
`;
}

/** A reduction: how to start, combine two partial values, and finish. */
export interface ReduceSpec {
  name: string;
  in: CType;
  out: CType;
  /** C type partial values are kept in. */
  acc: string;
  init: string;
  /** Expression over partial values `p` and `q`. */
  combine: string;
  /** Expression over the final value `r` and the reduced length `n`. */
  finish: string;
}

/** Warp shuffles, then one warp over the warps' results; every thread gets the result. */
function blockReduce(fn: string, acc: string, init: string, combine: string): string {
  return `
__device__ __forceinline__ ${acc} ${fn}_combine(${acc} p, ${acc} q) { return ${combine}; }
__device__ ${acc} ${fn}(${acc} v, ${acc} *sh) {
  for (int o = 16; o > 0; o >>= 1) v = ${fn}_combine(v, __shfl_down_sync(0xffffffffu, v, o));
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    v = lane < (int)(blockDim.x >> 5) ? sh[lane] : ${init};
    for (int o = 16; o > 0; o >>= 1) v = ${fn}_combine(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) sh[0] = v;
  }
  __syncthreads();
  return sh[0];
}
`;
}

/** Reduces each contiguous row of `n` (the reduced dim is the last): one block per row. */
export function reduceRowsSource(spec: ReduceSpec): string {
  const { acc } = spec;
  return `${PRELUDE}${blockReduce('gg_block', acc, spec.init, spec.combine)}
extern "C" __global__ void ${spec.name}(${spec.out.storage} *__restrict__ out, const ${spec.in.storage} *__restrict__ x,
    long long rows, long long n) {
  __shared__ ${acc} sh[32];
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const ${spec.in.storage} *xr = x + row * n;
    ${acc} v = ${spec.init};
    for (long long p = threadIdx.x; p < n; p += blockDim.x) v = gg_block_combine(v, (${acc})(${spec.in.load('xr[p]')}));
    ${acc} r = gg_block(v, sh);
    if (threadIdx.x == 0) out[row] = ${spec.out.store(`(${spec.out.compute})(${spec.finish})`)};
  }
}
`;
}

/** Reduces dim 1 of an [outer, n, inner] tensor (inner > 1): one thread per output. */
export function reduceStridedSource(spec: ReduceSpec): string {
  const { acc } = spec;
  return `${PRELUDE}
__device__ __forceinline__ ${acc} gg_combine(${acc} p, ${acc} q) { return ${spec.combine}; }
extern "C" __global__ void ${spec.name}(${spec.out.storage} *__restrict__ out, const ${spec.in.storage} *__restrict__ x,
    long long outer, long long n, long long inner) {
  long long total = outer * inner;
  long long stride = (long long)gridDim.x * blockDim.x;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
    long long o = t / inner, j = t - o * inner;
    const ${spec.in.storage} *base = x + o * n * inner + j;
    ${acc} r = ${spec.init};
    for (long long p = 0; p < n; p++) r = gg_combine(r, (${acc})(${spec.in.load('base[p * inner]')}));
    out[t] = ${spec.out.store(`(${spec.out.compute})(${spec.finish})`)};
  }
}
`;
}

/** Softmax over each contiguous row of `n`: max, sum of exp, then the quotient, in `t.compute`. */
export function softmaxSource(name: string, t: CType): string {
  const c = t.compute;
  const f = c === 'double' ? '' : 'f';
  return `${PRELUDE}${blockReduce('gg_bmax', c, `(${c})gg_neg_inf()`, '((q > p || q != q) ? q : p)')}${blockReduce('gg_bsum', c, '0', 'p + q')}
extern "C" __global__ void ${name}(${t.storage} *__restrict__ out, const ${t.storage} *__restrict__ x, long long rows, long long n) {
  __shared__ ${c} sh[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const ${t.storage} *row = x + r * n;
    ${t.storage} *orow = out + r * n;
    ${c} m = (${c})gg_neg_inf();
    for (long long p = threadIdx.x; p < n; p += blockDim.x) m = gg_bmax_combine(m, ${t.load('row[p]')});
    m = gg_bmax(m, sh);
    ${c} s = 0;
    for (long long p = threadIdx.x; p < n; p += blockDim.x) s += exp${f}(${t.load('row[p]')} - m);
    s = gg_bsum(s, sh);
    for (long long p = threadIdx.x; p < n; p += blockDim.x) orow[p] = ${t.store(`exp${f}(${t.load('row[p]')} - m) / s`)};
  }
}
`;
}
