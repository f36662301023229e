/**
 * Element-wise reductions on host arrays, in rank order so that every rank computes
 * the same bits. float16/bfloat16 accumulate in float32 and round once (RNE); avg
 * divides the sum by the number of inputs, truncating for integers as NCCL does.
 */
import { decodeTable, dtypeInfo, encodeValues, type DType, type StorageArray } from '../tensor/index.ts';
import type { ReduceOp } from './device-communicator.ts';

type Num = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array;

/** out[i] = op over inputs[k][i] (k in order), for `count` elements. `out` may alias an input. */
export function reduceInto(op: ReduceOp, dtype: DType, inputs: StorageArray[], out: StorageArray, count: number): void {
  const info = dtypeInfo(dtype);
  if (info.encoded) return reduceEncoded(op, dtype, inputs as (Uint16Array | Uint8Array)[], out as Uint16Array | Uint8Array, count);
  if (out instanceof BigInt64Array) return reduceBig(op, inputs as BigInt64Array[], out, count);
  const o = out as Num;
  const first = inputs[0] as Num;
  const acc = new Float64Array(count);
  for (let i = 0; i < count; i++) acc[i] = first[i];
  for (let k = 1; k < inputs.length; k++) combine(op, acc, inputs[k] as Num, count);
  const integer = !(o instanceof Float32Array || o instanceof Float64Array);
  for (let i = 0; i < count; i++) {
    const v = op === 'avg' ? acc[i] / inputs.length : acc[i];
    o[i] = integer && op === 'avg' ? Math.trunc(v) : v;
  }
}

function combine(op: ReduceOp, acc: Float64Array | Float32Array, x: ArrayLike<number>, count: number): void {
  switch (op) {
    case 'sum':
    case 'avg':
      for (let i = 0; i < count; i++) acc[i] += x[i];
      return;
    case 'prod':
      for (let i = 0; i < count; i++) acc[i] *= x[i];
      return;
    case 'max':
      for (let i = 0; i < count; i++) if (x[i] > acc[i] || Number.isNaN(x[i])) acc[i] = x[i];
      return;
    case 'min':
      for (let i = 0; i < count; i++) if (x[i] < acc[i] || Number.isNaN(x[i])) acc[i] = x[i];
  }
}

function reduceEncoded(op: ReduceOp, dtype: DType, inputs: (Uint16Array | Uint8Array)[], out: Uint16Array | Uint8Array, count: number): void {
  const lut = decodeTable(dtype);
  const acc = new Float32Array(count);
  const first = inputs[0];
  for (let i = 0; i < count; i++) acc[i] = lut[first[i]];
  const decoded = new Float32Array(count);
  for (let k = 1; k < inputs.length; k++) {
    const x = inputs[k];
    for (let i = 0; i < count; i++) decoded[i] = lut[x[i]];
    combine(op, acc, decoded, count);
  }
  if (op === 'avg') for (let i = 0; i < count; i++) acc[i] /= inputs.length;
  encodeValues(dtype, acc, out.subarray(0, count));
}

function reduceBig(op: ReduceOp, inputs: BigInt64Array[], out: BigInt64Array, count: number): void {
  const acc = inputs[0].slice(0, count);
  for (let k = 1; k < inputs.length; k++) {
    const x = inputs[k];
    for (let i = 0; i < count; i++) {
      const a = acc[i];
      const b = x[i];
      acc[i] = op === 'prod' ? a * b : op === 'max' ? (b > a ? b : a) : op === 'min' ? (b < a ? b : a) : a + b;
    }
  }
  if (op === 'avg') for (let i = 0; i < count; i++) acc[i] /= BigInt(inputs.length);
  out.set(acc);
}
