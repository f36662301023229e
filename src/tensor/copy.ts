/**
 * Strided → contiguous copies. On the host: a loop that moves whole contiguous runs
 * with TypedArray.set. On a device there are no kernels here, so the copy is cut into
 * as few cudaMemcpy2DAsync calls as possible: the innermost run that is contiguous in
 * the source is a 2D row, the dim outside it gives the rows, and the remaining dims are
 * looped over.
 */
import { MemcpyKind, cuda } from '../../native/index.ts';
import type { StorageArray } from './dtype.ts';

/** A strided view: shape, strides and offset in elements. */
export interface Layout {
  shape: readonly number[];
  strides: readonly number[];
  offset: number;
}

/** Row-major strides of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Drops size-1 dims (their stride is irrelevant) so runs can merge. */
function squeeze(layout: Layout): { shape: number[]; strides: number[] } {
  const shape: number[] = [];
  const strides: number[] = [];
  layout.shape.forEach((n, i) => {
    if (n !== 1) {
      shape.push(n);
      strides.push(layout.strides[i]);
    }
  });
  return { shape, strides };
}

/** Number of trailing dims that are contiguous in the source, and their element count. */
function innerRun(shape: number[], strides: number[]): { dims: number; elems: number } {
  let elems = 1;
  let dims = 0;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (strides[i] !== elems) break;
    elems *= shape[i];
    dims++;
  }
  return { dims, elems };
}

/** Calls `visit(srcOffset, dstOffset)` for every index of the first `outer` dims. */
function forEachOuter(
  shape: number[],
  srcStrides: number[],
  dstStrides: number[],
  outer: number[],
  base: number,
  visit: (src: number, dst: number) => void,
): void {
  const idx = new Array<number>(outer.length).fill(0);
  const total = outer.reduce((acc, d) => acc * shape[d], 1);
  for (let k = 0; k < total; k++) {
    let src = base;
    let dst = 0;
    for (let j = 0; j < outer.length; j++) {
      src += idx[j] * srcStrides[outer[j]];
      dst += idx[j] * dstStrides[outer[j]];
    }
    visit(src, dst);
    for (let j = outer.length - 1; j >= 0; j--) {
      if (++idx[j] < shape[outer[j]]) break;
      idx[j] = 0;
    }
  }
}

/** Copies the strided view `src` (over `from`) into the contiguous `to`. */
export function copyHostStrided(from: StorageArray, layout: Layout, to: StorageArray): void {
  const { shape, strides } = squeeze(layout);
  const run = innerRun(shape, strides);
  const outer = shape.length - run.dims;
  const dstStrides = contiguousStrides(shape);
  const dims = Array.from({ length: outer }, (_, i) => i);
  const f = from as unknown as { subarray(a: number, b: number): ArrayLike<number> };
  const t = to as unknown as { set(a: ArrayLike<number>, at: number): void };
  forEachOuter(shape, strides, dstStrides, dims, layout.offset, (s, d) => {
    if (run.elems === 1) (to as unknown as number[])[d] = (from as unknown as number[])[s];
    else t.set(f.subarray(s, s + run.elems), d);
  });
}

/**
 * Enqueues on `stream` the copy of the strided device view `src` (element size
 * `itemsize`, base pointer `srcBase`) into the contiguous buffer at `dstBase`.
 */
export function copyDeviceStrided(
  srcBase: bigint,
  layout: Layout,
  dstBase: bigint,
  itemsize: number,
  stream: bigint,
): void {
  const { shape, strides } = squeeze(layout);
  const rt = cuda();
  const dstStrides = contiguousStrides(shape);
  const run = innerRun(shape, strides);
  const es = BigInt(itemsize);
  if (run.dims === shape.length) {
    const bytes = shape.reduce((a, b) => a * b, 1) * itemsize;
    rt.cudaMemcpyAsync(dstBase, srcBase + BigInt(layout.offset) * es, bytes, MemcpyKind.DeviceToDevice, stream);
    return;
  }
  let rowDim: number;
  let width: number;
  if (run.dims > 0) {
    rowDim = shape.length - run.dims - 1; // the dim just outside the contiguous run
    width = run.elems;
  } else {
    // No contiguous run: one element per row; take the largest dim as rows.
    rowDim = shape.indexOf(Math.max(...shape));
    width = 1;
  }
  const outer = shape.map((_, i) => i).filter((i) => i !== rowDim && i < shape.length - run.dims);
  forEachOuter(shape, strides, dstStrides, outer, layout.offset, (s, d) => {
    rt.cudaMemcpy2DAsync(
      dstBase + BigInt(d) * es,
      dstStrides[rowDim] * itemsize,
      srcBase + BigInt(s) * es,
      strides[rowDim] * itemsize,
      width * itemsize,
      shape[rowDim],
      MemcpyKind.DeviceToDevice,
      stream,
    );
  });
}
