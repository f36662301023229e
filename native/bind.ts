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
    const ok = row.okCodes ?? [];
    out[name] = (...args: unknown[]) => {
      const code = fn(...args) as number;
      if (code !== 0 && !ok.includes(code)) throw makeError(code, name);
      return code;
    };
  }
  return out;
}
