/**
 * vLLM's rank layout (parallel_state.py: initialize_model_parallel) as pure functions. Global ranks are arranged as
 * `arange(world).reshape(ExternalDP, DP, PP, PCP, TP)` with TP fastest; the groups of
 * one axis are the rows obtained by swapping that axis with the last, flattening in C
 * order and cutting rows of the axis length. Every rank computes every group list in
 * the same order, so group creation order agrees everywhere.
 */
import { setting } from '../env.ts';
import { InvalidArgumentError } from '../errors.ts';

/** Sizes of the parallel axes. Each defaults to 1. */
export interface ParallelSizes {
  tensorParallelSize?: number;
  pipelineParallelSize?: number;
  dataParallelSize?: number;
  prefillContextParallelSize?: number;
  decodeContextParallelSize?: number;
}

/** Rank lists (global ranks) of every group kind, in creation order. */
export interface GroupLayout {
  tp: number[][];
  dcp: number[][];
  pcp: number[][];
  pp: number[][];
  dp: number[][];
  ep: number[][];
}

/** `a / b` when `b` divides `a`, else an error with vLLM's message (vllm/distributed/utils.py: divide). */
export function divide(a: number, b: number): number {
  ensureDivisibility(a, b);
  return a / b;
}

/** Throws when `b` does not divide `a`: `"{a} is not divisible by {b}"`. */
export function ensureDivisibility(a: number, b: number): void {
  if (b === 0 || a % b !== 0) throw new InvalidArgumentError('size', `${a} is not divisible by ${b}`);
}

/**
 * Groups along `axis` of an array of `dims` (C order): swap `axis` with the last axis,
 * flatten, cut rows of `dims[axis]`.
 */
function groupsAlong(dims: number[], axis: number): number[][] {
  const last = dims.length - 1;
  const permuted = dims.slice();
  [permuted[axis], permuted[last]] = [permuted[last], permuted[axis]];
  const strides = new Array<number>(dims.length);
  strides[last] = 1;
  for (let i = last - 1; i >= 0; i--) strides[i] = strides[i + 1] * dims[i + 1];
  const total = dims.reduce((a, b) => a * b, 1);
  const flat: number[] = [];
  const index = new Array<number>(dims.length).fill(0);
  for (let k = 0; k < total; k++) {
    // index runs over the permuted array in C order; map it back to the original.
    const original = index.slice();
    [original[axis], original[last]] = [original[last], original[axis]];
    flat.push(original.reduce((acc, v, i) => acc + v * strides[i], 0));
    for (let i = last; i >= 0; i--) {
      if (++index[i] < permuted[i]) break;
      index[i] = 0;
    }
  }
  const rows: number[][] = [];
  for (let i = 0; i < flat.length; i += dims[axis]) rows.push(flat.slice(i, i + dims[axis]));
  return rows;
}

/**
 * Every group list for `worldSize` ranks with vLLM's layout. EP spans DP×PCP×TP
 * (swap of the DP and PP axes). DCP splits each TP group and must divide TP.
 */
export function groupLayout(worldSize: number, sizes: ParallelSizes = {}): GroupLayout {
  const tp = sizes.tensorParallelSize ?? 1;
  const pp = sizes.pipelineParallelSize ?? 1;
  const dp = sizes.dataParallelSize ?? 1;
  const pcp = sizes.prefillContextParallelSize ?? 1;
  const dcp = sizes.decodeContextParallelSize ?? 1;
  for (const [name, v] of Object.entries({
    tensorParallelSize: tp,
    pipelineParallelSize: pp,
    dataParallelSize: dp,
    prefillContextParallelSize: pcp,
    decodeContextParallelSize: dcp,
  })) {
    if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(name, `must be a positive integer, got ${v}`);
  }
  const inner = dp * pp * pcp * tp;
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize % inner !== 0) {
    throw new InvalidArgumentError(
      'worldSize',
      `world size ${worldSize} is not divisible by dp × pp × pcp × tp = ${dp} × ${pp} × ${pcp} × ${tp}`,
    );
  }
  if (tp % dcp !== 0) throw new InvalidArgumentError('decodeContextParallelSize', `${tp} is not divisible by ${dcp}`);
  const dims = [worldSize / inner, dp, pp, pcp, tp];
  const chunk = (n: number): number[][] => {
    const rows: number[][] = [];
    for (let i = 0; i < worldSize; i += n) rows.push(Array.from({ length: n }, (_, j) => i + j));
    return rows;
  };
  // EP: swap the DP and PP axes, flatten, cut rows of DP×PCP×TP.
  const epSize = dp * pcp * tp;
  const swapped = swapDpPp(dims);
  const ep: number[][] = [];
  for (let i = 0; i < swapped.length; i += epSize) ep.push(swapped.slice(i, i + epSize));
  return {
    tp: chunk(tp),
    dcp: chunk(dcp),
    pcp: groupsAlong(dims, 3),
    pp: groupsAlong(dims, 2),
    dp: groupsAlong(dims, 1),
    ep,
  };
}

/**
 * Global ranks of the array transposed on (DP, PP), flattened in C order: the EP groups
 * are its consecutive rows of DP×PCP×TP.
 */
function swapDpPp(dims: number[]): number[] {
  const [x, dp, pp, pcp, tp] = dims;
  const out: number[] = [];
  for (let a = 0; a < x; a++)
    for (let p = 0; p < pp; p++)
      for (let d = 0; d < dp; d++)
        for (let c = 0; c < pcp; c++)
          for (let t = 0; t < tp; t++) out.push((((a * dp + d) * pp + p) * pcp + c) * tp + t);
  return out;
}

/** The group of `layout[kind]` that contains `rank`. */
export function groupOf(groups: number[][], rank: number): number[] {
  const found = groups.find((g) => g.includes(rank));
  if (!found) throw new InvalidArgumentError('rank', `rank ${rank} is in none of the groups`);
  return found;
}

/**
 * Layers [start, end) of pipeline stage `ppRank` (vllm/distributed/utils.py: get_pp_indices). Remainder layers
 * go one each to stages -2, -3, … (never the last). `GPUGROUP_PP_LAYER_PARTITION`
 * (or vLLM's `VLLM_PP_LAYER_PARTITION`) overrides with comma-separated counts.
 */
export function getPpIndices(numHiddenLayers: number, ppRank: number, ppSize: number): [number, number] {
  if (!Number.isInteger(ppSize) || ppSize < 1)
    throw new InvalidArgumentError('ppSize', `must be a positive integer, got ${ppSize}`);
  if (!Number.isInteger(ppRank) || ppRank < 0 || ppRank >= ppSize)
    throw new InvalidArgumentError('ppRank', `${ppRank} is out of range [0, ${ppSize})`);
  if (!Number.isInteger(numHiddenLayers) || numHiddenLayers < 0)
    throw new InvalidArgumentError('numHiddenLayers', `must be a non-negative integer, got ${numHiddenLayers}`);
  const raw = setting('GPUGROUP_PP_LAYER_PARTITION');
  let partitions: number[];
  if (raw !== undefined) {
    const parts = raw.split(',');
    if (parts.some((p) => !/^\s*-?\d+\s*$/.test(p)))
      throw new InvalidArgumentError('GPUGROUP_PP_LAYER_PARTITION', `Invalid partition string: ${raw}`);
    partitions = parts.map(Number);
    if (partitions.length !== ppSize) {
      throw new InvalidArgumentError(
        'GPUGROUP_PP_LAYER_PARTITION',
        `len(partitions)=${partitions.length} does not match pp_size=${ppSize}.`,
      );
    }
    const sum = partitions.reduce((a, b) => a + b, 0);
    if (sum !== numHiddenLayers) {
      throw new InvalidArgumentError(
        'GPUGROUP_PP_LAYER_PARTITION',
        `sum(partitions)=${sum} does not match num_hidden_layers=${numHiddenLayers}.`,
      );
    }
  } else {
    const base = Math.floor(numHiddenLayers / ppSize);
    partitions = new Array<number>(ppSize).fill(base);
    const remainder = numHiddenLayers % ppSize;
    for (let i = 2; i < remainder + 2; i++) partitions[ppSize - i] += 1;
  }
  const start = partitions.slice(0, ppRank).reduce((a, b) => a + b, 0);
  return [start, start + partitions[ppRank]];
}
