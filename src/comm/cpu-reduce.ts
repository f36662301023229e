/**
 * Element-wise reductions of the CPU backend. Inputs are combined in rank order, so
 * every rank that reduces the same elements gets the same bits.
 *
 * Arithmetic follows NCCL: float32 (and the float32 accumulator of float16/bfloat16)
 * rounds to float32 after every step (Math.fround), float64 works in float64, integers
 * wrap like C; `avg` of an integer dtype is the wrapped sum divided by the number of
 * ranks, truncated toward zero (NCCL's SumPostDiv); `avg` of a float is sum / n (NCCL
 * pre-multiplies by 1/n, which can differ in the last bit). float16/bfloat16 round once,
 * to nearest even, at the end. max/min propagate NaN (torch's behavior).
 *
 * Speed: one fused pass per call (every input read once, the output written once), in a
 * kernel generated per (storage type, op, number of inputs). A single loop over a union
 * of typed-array kinds would be megamorphic in V8 and run several times slower.
 */
import { decodeTable, dtypeInfo, floatToHalf, type DType, type StorageArray } from '../tensor/index.ts';
import type { ReduceOp } from './device-communicator.ts';

/** One input of a reduction: elements of `array` starting at element `offset`. */
export interface ReduceSource {
  array: StorageArray;
  offset: number;
}

type Kernel = (inputs: StorageArray[], out: StorageArray, count: number, lut: Float32Array) => void;

const kernels = new Map<string, Kernel>();

/**
 * out[outOffset + i] = op over sources (in order) of source[offset + i], for i < count.
 * `scratch` holds at least `count` float32 values; float16/bfloat16 accumulate there.
 * `out` must not overlap a source except at the same offset.
 */
export function reduceInto(
  op: ReduceOp,
  dtype: DType,
  sources: readonly ReduceSource[],
  out: StorageArray,
  outOffset: number,
  count: number,
  scratch: Float32Array,
): void {
  if (count === 0) return;
  const n = sources.length;
  if (dtype === 'int64') {
    reduceBig(op, sources, out as BigInt64Array, outOffset, count);
    return;
  }
  // Views at offset 0 keep index arithmetic out of the loop (a few allocations per call, not per element).
  const inputs = sources.map((s) => s.array.subarray(s.offset, s.offset + count) as StorageArray);
  if (dtypeInfo(dtype).encoded) {
    kernelFor('enc', op, n)(inputs, scratch, count, decodeTable(dtype));
    encodeInto(dtype, scratch, out as Uint16Array, outOffset, count);
    return;
  }
  kernelFor(dtype, op, n)(inputs, out.subarray(outOffset, outOffset + count) as StorageArray, count, EMPTY_LUT);
}

const EMPTY_LUT = new Float32Array(0);

/** Kinds: float32, float64, int8, uint8, int32, and 'enc' (decode through the LUT, accumulate in float32). */
function kernelFor(kind: string, op: ReduceOp, n: number): Kernel {
  const key = `${kind}:${op}:${n}`;
  let k = kernels.get(key);
  if (!k) {
    k = compile(kind, op, n);
    kernels.set(key, k);
  }
  return k;
}

function compile(kind: string, op: ReduceOp, n: number): Kernel {
  const f32 = kind === 'float32' || kind === 'enc';
  const int = kind === 'int8' || kind === 'uint8' || kind === 'int32';
  const round = (e: string): string => (f32 ? `Math.fround(${e})` : e);
  const wrap =
    kind === 'int8'
      ? (e: string) => `((${e}) << 24 >> 24)`
      : kind === 'uint8'
        ? (e: string) => `((${e}) & 255)`
        : (e: string) => `((${e}) | 0)`;
  const value = (k: number): string => (kind === 'enc' ? `lut[s${k}[i]]` : `s${k}[i]`);
  const lines: string[] = [];
  for (let k = 0; k < n; k++) lines.push(`const s${k} = src[${k}];`);
  const body: string[] = [`let a = ${value(0)};`, 'let b;'];
  for (let k = 1; k < n; k++) {
    body.push(`b = ${value(k)};`);
    if (op === 'sum' || op === 'avg') body.push(`a = ${round('a + b')};`);
    // Integer products exceed 2^53: Math.imul keeps the exact low 32 bits, as C wraps.
    else if (op === 'prod') body.push(int ? 'a = Math.imul(a, b);' : `a = ${round('a * b')};`);
    else if (op === 'max') body.push('if (b > a || b !== b) a = b;');
    else body.push('if (b < a || b !== b) a = b;');
  }
  // Integer sums of at most 2^10 int32 values are exact in a double; wrap once at the end.
  const result = op === 'avg' ? (int ? `Math.trunc(${wrap('a')} / ${n})` : round(`a / ${n}`)) : 'a';
  body.push(`out[i] = ${result};`);
  const source = `${lines.join('\n')}\nfor (let i = 0; i < count; i++) {\n${body.join('\n')}\n}`;
  return new Function('src', 'out', 'count', 'lut', source) as Kernel;
}

/** float32 accumulators → float16/bfloat16 bits, round to nearest even; NaN stays NaN. */
function encodeInto(dtype: DType, acc: Float32Array, out: Uint16Array, oo: number, count: number): void {
  if (dtype === 'bfloat16') {
    const bits = new Uint32Array(acc.buffer, acc.byteOffset, count);
    for (let i = 0; i < count; i++) {
      const u = bits[i];
      out[oo + i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < count; i++) out[oo + i] = floatToHalf(acc[i]);
  }
}

function reduceBig(op: ReduceOp, sources: readonly ReduceSource[], o: BigInt64Array, oo: number, count: number): void {
  const first = sources[0];
  if (first.array !== o || first.offset !== oo)
    o.set((first.array as BigInt64Array).subarray(first.offset, first.offset + count), oo);
  const end = oo + count;
  // Stores into a BigInt64Array wrap modulo 2^64, as int64 arithmetic in C does.
  for (let k = 1; k < sources.length; k++) {
    const x = sources[k].array as BigInt64Array;
    const d = sources[k].offset - oo;
    if (op === 'sum' || op === 'avg') for (let i = oo; i < end; i++) o[i] += x[i + d];
    else if (op === 'prod') for (let i = oo; i < end; i++) o[i] *= x[i + d];
    else if (op === 'max')
      for (let i = oo; i < end; i++) {
        if (x[i + d] > o[i]) o[i] = x[i + d];
      }
    else
      for (let i = oo; i < end; i++) {
        if (x[i + d] < o[i]) o[i] = x[i + d];
      }
  }
  if (op === 'avg') {
    // BigInt division truncates toward zero, like NCCL's SumPostDiv.
    const n = BigInt(sources.length);
    for (let i = oo; i < end; i++) o[i] /= n;
  }
}
