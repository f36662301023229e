/**
 * Turns a table of C prototypes into callable functions whose non-zero return codes
 * become typed errors. This is the one place return codes are checked.
 */
import type { LibraryHandle } from 'koffi';

/** How a function's return value is treated. */
export type ReturnKind =
  /** ncclResult_t / cudaError_t: anything but the `okCodes` throws. */
  | 'status'
  /** Returned as is (a string, a pointer, void). */
  | 'value';

/** One row: the prototype as koffi reads it, and what its return means. */
export interface ProtoRow {
  proto: string;
  returns?: ReturnKind;
  /** Codes returned to the caller instead of thrown, e.g. cudaErrorNotReady for queries. */
  okCodes?: readonly number[];
  /** Missing from older libraries: absent means "not supported", not a load failure. */
  optional?: boolean;
}

/** Builds the error for a failed call: (code, function name) → Error. */
export type ErrorFactory = (code: number, call: string) => Error;

// biome-ignore lint/suspicious/noExplicitAny: koffi's functions take and return any; the caller's interface types the table
type AnyFn = (...args: any[]) => any;

/**
 * Binds every row of `table` in `lib`. Status functions are wrapped so that a code
 * not in `okCodes` (0 is always fine) throws `makeError(code, name)`; allowed non-zero
 * codes are returned. Optional symbols that are missing are left out of the result.
 */
export function bindTable(
  lib: LibraryHandle,
  table: readonly ProtoRow[],
  makeError: ErrorFactory,
): Record<string, AnyFn> {
  const out: Record<string, AnyFn> = {};
  for (const row of table) {
    let fn: ReturnType<LibraryHandle['func']>;
    try {
      fn = lib.func(row.proto);
    } catch (err) {
      if (row.optional) continue;
      throw err;
    }
    const name = fn.info.name;
    if ((row.returns ?? 'status') === 'value') {
      out[name] = fn;
      continue;
    }
    out[name] = checked(fn, fn.info.arguments.length, row.okCodes ?? [], (code) => makeError(code, name));
  }
  return out;
}

/**
 * `fn` with its return code checked. Up to eight arguments the wrapper has fixed
 * parameters: a rest-parameter wrapper allocates an array and spreads it on every call,
 * which shows in the per-collective host cost (every NCCL and CUDA call goes through here).
 */
function checked(fn: AnyFn, arity: number, ok: readonly number[], fail: (code: number) => Error): AnyFn {
  const check = (code: number): number => {
    if (code !== 0 && !ok.includes(code)) throw fail(code);
    return code;
  };
  switch (arity) {
    case 0:
      return () => check(fn());
    case 1:
      return (a) => check(fn(a));
    case 2:
      return (a, b) => check(fn(a, b));
    case 3:
      return (a, b, c) => check(fn(a, b, c));
    case 4:
      return (a, b, c, d) => check(fn(a, b, c, d));
    case 5:
      return (a, b, c, d, e) => check(fn(a, b, c, d, e));
    case 6:
      return (a, b, c, d, e, f) => check(fn(a, b, c, d, e, f));
    case 7:
      return (a, b, c, d, e, f, g) => check(fn(a, b, c, d, e, f, g));
    case 8:
      return (a, b, c, d, e, f, g, h) => check(fn(a, b, c, d, e, f, g, h));
    default:
      return (...args: unknown[]) => check(fn(...args));
  }
}
