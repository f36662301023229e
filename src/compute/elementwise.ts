/**
 * Elementwise ops and casts. On a device: one generated kernel per op, dtype and
 * variant, enqueued on the current stream; on the host: the same op in a loop.
 *
 * Rules (the same on both):
 * - Both tensor operands have one dtype and one device; the output has that dtype
 *   (no type promotion: `cast` first). float16/bfloat16/fp8 compute in float32.
 * - Broadcasting is over trailing dims: the smaller operand's shape (leading 1s
 *   dropped) must equal the trailing dims of the larger one's; the output has the
 *   larger operand's shape.
 * - A number operand is a scalar of the tensor's dtype (an integer for integer dtypes).
 * - fp8 tensors only cast; div, gelu, silu and exp are for floating dtypes.
 * - Integer math wraps (two's complement). A float → integer cast truncates toward
 *   zero; NaN becomes 0; values out of the target's range are unspecified.
 */
import { InvalidArgumentError } from '../errors.ts';
import { DTYPES, type DType, Tensor, parseDevice } from '../tensor/index.ts';
import { CTYPES, type CType } from './ctypes.ts';
import { BLOCK, type ParamValue, generatedKernel, gridFor, launch } from './device.ts';
import { type HostValues, asNumbers, readHost, writeHost } from './host.ts';
import { vectorWidth, elementwiseSource } from './kernels.ts';
import { BINARY, type OpDef, UNARY, lookupOp } from './ops-table.ts';

const FP8: readonly DType[] = ['float8_e4m3fn', 'float8_e5m2'];

/** Throws unless `t` is a Tensor. */
export function checkTensor(t: unknown, argument: string): asserts t is Tensor {
  if (!(t instanceof Tensor)) throw new InvalidArgumentError(argument, `expected a Tensor, got ${typeof t}`);
}

/** Throws unless `op` is defined on `dtype`. */
function checkDtype(def: OpDef, op: string, dtype: DType, argument: string): void {
  if (FP8.includes(dtype))
    throw new InvalidArgumentError(argument, `${op} is not defined on ${dtype}; cast to float32 or bfloat16 first`);
  if (!CTYPES[dtype].float && !def.hostBig)
    throw new InvalidArgumentError(argument, `${op} needs a floating dtype, got ${dtype}; cast first`);
}

function stripped(shape: readonly number[]): readonly number[] {
  let i = 0;
  while (i < shape.length - 1 && shape[i] === 1) i++;
  return shape.length > 0 && shape.every((d) => d === 1) ? [] : shape.slice(i);
}

/** The output shape of a trailing-dims broadcast of `a` and `b`, or an InvalidArgumentError. */
export function broadcastShape(a: readonly number[], b: readonly number[]): readonly number[] {
  const na = a.reduce((x, y) => x * y, 1);
  const nb = b.reduce((x, y) => x * y, 1);
  const [big, small] = na > nb || (na === nb && a.length >= b.length) ? [a, b] : [b, a];
  const s = stripped(small);
  const tail = big.slice(big.length - s.length);
  if (s.length > big.length || s.some((d, i) => d !== tail[i]))
    throw new InvalidArgumentError(
      'b',
      `shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast: the smaller must equal the trailing dims of the larger`,
    );
  return big;
}

/** Kernel-parameter form of a scalar in compute type `c`. */
function scalarParam(c: CType, value: number): ParamValue {
  if (c.compute === 'float') return { f32: value };
  if (c.compute === 'double') return { f64: value };
  if (c.compute === 'long long') return { i64: BigInt(value) };
  return { i32: value };
}

function aligned(...ts: Tensor[]): boolean {
  return ts.every((t) => t.dataPtr % 16n === 0n);
}

/** Enqueues out = expr(a, b | s) on a device; a and b contiguous. */
function launchElementwise(name: string, expr: string, a: Tensor, b: Tensor | null, scalar: number, out: Tensor): void {
  if (out.numel === 0) return;
  const ca = CTYPES[a.dtype];
  const co = CTYPES[out.dtype];
  const cb = b ? CTYPES[b.dtype] : undefined;
  const same = b === null ? a.numel === out.numel : a.numel === b.numel;
  const vec = same && aligned(a, out, ...(b ? [b] : []));
  const kname = `${name}_${same ? 'same' : 'bcast'}${vec ? '_v' : ''}${b ? '' : '_s'}`;
  const ordinal = parseDevice(out.device) as number;
  const fn = generatedKernel(ordinal, kname, () =>
    elementwiseSource({ name: kname, a: ca, b: cb, scalar: ca.compute, out: co, expr, same, vec }),
  );
  const work = vec ? Math.ceil(out.numel / vectorWidth(ca, co, ...(cb ? [cb] : []))) : out.numel;
  launch(fn, gridFor(ordinal, work), BLOCK, 0, [
    { ptr: out.dataPtr },
    { ptr: a.dataPtr },
    { ptr: b ? b.dataPtr : 0n },
    { i64: out.numel },
    { i64: a.numel },
    { i64: b ? b.numel : 1 },
    scalarParam(ca, scalar),
  ]);
}

/** Host loop of a binary (or unary, `b` null) op. */
function hostElementwise(
  def: OpDef,
  dtype: DType,
  a: Tensor,
  b: Tensor | number | null,
  shape: readonly number[],
): Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  const av = readHost(a);
  const bv: HostValues | null = b instanceof Tensor ? readHost(b) : null;
  if (av instanceof BigInt64Array) {
    const f = def.hostBig!;
    const y = bv ? (bv as BigInt64Array) : BigInt64Array.of(BigInt(typeof b === 'number' ? b : 0));
    const out = new BigInt64Array(n);
    for (let i = 0; i < n; i++) out[i] = f(av[i % av.length], y[i % y.length]);
    return writeHost(shape, dtype, out);
  }
  const f = dtype === 'int32' && def.hostInt32 ? def.hostInt32 : def.host;
  const y = bv ? asNumbers(bv) : Float64Array.of(typeof b === 'number' ? b : 0);
  // float32 computes in float32 on the device: round each result once, as it does.
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f(av[i % av.length], y[i % y.length]);
  return writeHost(shape, dtype, out);
}

/**
 * `op(a, b)` elementwise for op in add, sub, mul, div; `b` a tensor (same dtype and
 * device, broadcast over trailing dims) or a number. Stream-ordered on a device.
 */
export function binary(op: string, a: Tensor, b: Tensor | number): Tensor {
  const def = lookupOp(BINARY, op, 'binary');
  checkTensor(a, 'a');
  checkDtype(def, op, a.dtype, 'a');
  let shape: readonly number[] = a.shape;
  if (typeof b === 'number') {
    if (!CTYPES[a.dtype].float && !Number.isInteger(b))
      throw new InvalidArgumentError('b', `${a.dtype} ${op} needs an integer scalar, got ${b}; cast the tensor first`);
  } else {
    checkTensor(b, 'b');
    if (b.dtype !== a.dtype)
      throw new InvalidArgumentError('b', `dtype ${b.dtype} differs from a's ${a.dtype}; cast one of them first`);
    if (b.device !== a.device) throw new InvalidArgumentError('b', `on ${b.device}, a is on ${a.device}`);
    shape = broadcastShape(a.shape, b.shape);
  }
  if (!a.isCuda) return hostElementwise(def, a.dtype, a, b, shape);
  const ac = a.contiguous();
  const bc = typeof b === 'number' ? null : b.contiguous();
  const out = Tensor.empty(shape, { dtype: a.dtype, device: a.device });
  launchElementwise(
    `gg_${op}_${a.dtype}`,
    def.c(CTYPES[a.dtype].compute === 'double' ? '' : 'f'),
    ac,
    bc,
    typeof b === 'number' ? b : 0,
    out,
  );
  if (ac !== a) ac.dispose();
  if (bc && bc !== b) bc.dispose();
  return out;
}

/** `op(x)` elementwise for op in neg, relu, gelu, silu, exp. Stream-ordered on a device. */
export function unary(op: string, x: Tensor): Tensor {
  const def = lookupOp(UNARY, op, 'unary');
  checkTensor(x, 'x');
  checkDtype(def, op, x.dtype, 'x');
  if (!x.isCuda) return hostElementwise(def, x.dtype, x, null, x.shape);
  const xc = x.contiguous();
  const out = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
  launchElementwise(`gg_${op}_${x.dtype}`, def.c(CTYPES[x.dtype].compute === 'double' ? '' : 'f'), xc, null, 0, out);
  if (xc !== x) xc.dispose();
  return out;
}

/** A copy of `x` converted to `dtype` (any dtype of the table, fp8 included). */
export function cast(x: Tensor, dtype: DType): Tensor {
  checkTensor(x, 'x');
  if (!DTYPES.includes(dtype))
    throw new InvalidArgumentError('dtype', `unknown dtype '${dtype}'; valid: ${DTYPES.join(', ')}`);
  if (!x.isCuda) return writeHost(x.shape, dtype, readHost(x));
  const xc = x.contiguous();
  const out = Tensor.empty(x.shape, { dtype, device: x.device });
  launchElementwise(`gg_cast_${x.dtype}_to_${dtype}`, 'x', xc, null, 0, out);
  if (xc !== x) xc.dispose();
  return out;
}

/** a + b (tensor or number, broadcast over trailing dims). */
export const add = (a: Tensor, b: Tensor | number): Tensor => binary('add', a, b);
/** a − b (tensor or number, broadcast over trailing dims). */
export const sub = (a: Tensor, b: Tensor | number): Tensor => binary('sub', a, b);
/** a · b (tensor or number, broadcast over trailing dims). */
export const mul = (a: Tensor, b: Tensor | number): Tensor => binary('mul', a, b);
/** a / b, true division (floating dtypes; tensor or number, broadcast over trailing dims). */
export const div = (a: Tensor, b: Tensor | number): Tensor => binary('div', a, b);
/** x · factor. */
export const scale = (x: Tensor, factor: number): Tensor => binary('mul', x, factor);
/** −x. */
export const neg = (x: Tensor): Tensor => unary('neg', x);
/** max(x, 0); NaN stays NaN. */
export const relu = (x: Tensor): Tensor => unary('relu', x);
/** x·Φ(x), the exact (erf) form of torch.nn.functional.gelu. */
export const gelu = (x: Tensor): Tensor => unary('gelu', x);
/** x·sigmoid(x). */
export const silu = (x: Tensor): Tensor => unary('silu', x);
/** eˣ. */
export const exp = (x: Tensor): Tensor => unary('exp', x);
