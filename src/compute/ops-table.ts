/**
 * The elementwise ops, each once: its CUDA C expression (in the dtype's compute type)
 * and the host function with the same meaning. Integer math wraps like the hardware's
 * (two's complement); floating math on float16/bfloat16/fp8 runs in float32 and rounds
 * once on store.
 */
import { InvalidArgumentError } from '../errors.ts';
import { erfc } from './erf.ts';

/** Host semantics of one op over numbers (float dtypes and the small integer dtypes). */
export type HostFn = (...xs: number[]) => number;
/** Host semantics over int64 values. */
export type HostBigFn = (...xs: bigint[]) => bigint;

/** One elementwise op. */
export interface OpDef {
  /** C expression over `x` (and `y` for binary ops); `f` is the float suffix ('' for double, 'f' for float). */
  c(f: string): string;
  host: HostFn;
  /** int32 needs its own host function where doubles would lose the wrap (mul). */
  hostInt32?: HostFn;
  /** Undefined: the op is for floating dtypes only. */
  hostBig?: HostBigFn;
}

const SQRT1_2 = Math.SQRT1_2;

/** Binary ops: `op(a, b)` elementwise. */
export const BINARY: Record<string, OpDef> = {
  add: { c: () => '(x + y)', host: (x, y) => x + y, hostBig: (x, y) => BigInt.asIntN(64, x + y) },
  sub: { c: () => '(x - y)', host: (x, y) => x - y, hostBig: (x, y) => BigInt.asIntN(64, x - y) },
  mul: {
    c: () => '(x * y)',
    host: (x, y) => x * y,
    hostInt32: (x, y) => Math.imul(x, y),
    hostBig: (x, y) => BigInt.asIntN(64, x * y),
  },
  div: { c: () => '(x / y)', host: (x, y) => x / y },
};

/** Unary ops: `op(x)` elementwise. */
export const UNARY: Record<string, OpDef> = {
  neg: { c: () => '(-x)', host: (x) => -x, hostInt32: (x) => -x | 0, hostBig: (x) => BigInt.asIntN(64, -x) },
  // NaN stays NaN (torch.relu); integers: max(x, 0).
  relu: {
    c: () => '(x > 0 ? x : (x != x ? x : 0))',
    host: (x) => (x > 0 || Number.isNaN(x) ? x : 0),
    hostBig: (x) => (x > 0n ? x : 0n),
  },
  // torch.nn.functional.gelu's default (approximate='none'), x·Φ(x), as 0.5·x·erfc(−x/√2):
  // equal to torch's 0.5·x·(1 + erf(x/√2)) but without its cancellation for x ≪ 0, where
  // 1 + erf is tiny and float32's erff keeps only absolute accuracy (1e-4 relative at x = −3.7).
  gelu: {
    c: (f) => `(0.5${f} * x * erfc${f}(-x * 0.7071067811865476${f}))`,
    host: (x) => 0.5 * x * erfc(-x * SQRT1_2),
  },
  silu: { c: (f) => `(x / (1.0${f} + exp${f}(-x)))`, host: (x) => x / (1 + Math.exp(-x)) },
  exp: { c: (f) => `exp${f}(x)`, host: (x) => Math.exp(x) },
};

/** The op of `table` named `op`, or an InvalidArgumentError listing the known ones. */
export function lookupOp(table: Record<string, OpDef>, op: string, kind: string): OpDef {
  const def = Object.hasOwn(table, op) ? table[op] : undefined;
  if (!def) throw new InvalidArgumentError('op', `unknown ${kind} op '${op}'; known: ${Object.keys(table).join(', ')}`);
  return def;
}
