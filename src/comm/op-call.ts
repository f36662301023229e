/**
 * What a rank called, as the user called it (`allGather float32 [2, 3]`), for the
 * errors that compare two ranks. The CPU backend keeps each rank's current call in its
 * shared segment, so a rank that finds a peer in a different collective can name both
 * sides: the op, the dtype and the shape on this rank and on the peer.
 */
import { DTYPES, type DType } from '../tensor/index.ts';
import type { ReduceOp } from './device-communicator.ts';

/** The public operations of a communicator, by the names users call them. */
export const USER_OPS = [
  'allReduce',
  'allGather',
  'allGatherv',
  'reduceScatter',
  'reduceScatterv',
  'gather',
  'broadcast',
  'send',
  'recv',
] as const;
export type UserOp = (typeof USER_OPS)[number];

const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'prod', 'max', 'min', 'avg'];

/** One call: the op, the caller's tensor (dtype, shape), the root and the reduction where they apply. */
export interface OpCall {
  op: UserOp;
  dtype: DType;
  shape: readonly number[];
  root?: number;
  reduce?: ReduceOp;
}

const MAX_DIMS = 8;
/** Int32 words one call takes: op, dtype, reduction, root, ndim, then up to 8 dims. */
export const CALL_WORDS = 5 + MAX_DIMS;

/** Writes `call` into `words` at `at` (plain stores: the writer publishes them with an atomic store after). */
export function writeCall(words: Int32Array, at: number, call: OpCall): void {
  words[at] = USER_OPS.indexOf(call.op) + 1;
  words[at + 1] = DTYPES.indexOf(call.dtype);
  words[at + 2] = call.reduce === undefined ? 0 : REDUCE_OPS.indexOf(call.reduce) + 1;
  words[at + 3] = call.root === undefined ? 0 : call.root + 1;
  words[at + 4] = call.shape.length;
  for (let i = 0; i < MAX_DIMS && i < call.shape.length; i++) words[at + 5 + i] = call.shape[i];
}

/** The call written at `at`, or null where none was. */
export function readCall(words: Int32Array, at: number): OpCall | null {
  const op = USER_OPS[words[at] - 1];
  const dtype = DTYPES[words[at + 1]];
  if (!op || !dtype) return null;
  const ndim = words[at + 4];
  const shape = Array.from({ length: Math.min(ndim, MAX_DIMS) }, (_, i) => words[at + 5 + i]);
  if (ndim > MAX_DIMS) shape.push(Number.NaN); // shown as …
  const call: OpCall = { op, dtype, shape };
  if (words[at + 2] > 0) call.reduce = REDUCE_OPS[words[at + 2] - 1];
  if (words[at + 3] > 0) call.root = words[at + 3] - 1;
  return call;
}

/** `allGather float32 [2, 3]`, `broadcast int64 [4] from 0`, `allReduce bfloat16 [8] (max)`. */
export function describeCall(call: OpCall | null): string {
  if (!call) return 'an unknown operation';
  const dims = call.shape.map((d) => (Number.isNaN(d) ? '…' : String(d))).join(', ');
  const root = call.root === undefined ? '' : ` ${call.op === 'broadcast' ? 'from' : 'to'} ${call.root}`;
  const reduce = call.reduce === undefined || call.reduce === 'sum' ? '' : ` (${call.reduce})`;
  return `${call.op} ${call.dtype} [${dims}]${root}${reduce}`;
}
