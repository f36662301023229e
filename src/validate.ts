/**
 * The argument checks every layer shares, each with one message: a bad value becomes an
 * InvalidArgumentError naming the argument, before any native call. Below every layer
 * but the FFI one (imports only src/errors.ts).
 */
import { InvalidArgumentError } from './errors.ts';

/** A value as an error message shows it: its type, then the value (`string '4'`). */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `string '${value}'`;
  if (typeof value === 'bigint') return `bigint ${value}n`;
  if (typeof value === 'function') return 'a function';
  if (typeof value !== 'object') return `${typeof value} ${String(value)}`;
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  const kind = Array.isArray(value) ? 'array' : (value.constructor?.name ?? 'object');
  return json === undefined || json.length > 80 ? kind : `${kind} ${json}`;
}

/** `value` when it is an integer ≥ 1; InvalidArgumentError naming `name` otherwise. */
export function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number')
    throw new InvalidArgumentError(name, `expected an integer, got ${describeValue(value)}`);
  if (!Number.isInteger(value) || value < 1)
    throw new InvalidArgumentError(name, `expected a positive integer, got ${value}`);
  return value;
}

/** `value` when it is an integer ≥ 0; InvalidArgumentError naming `name` otherwise. */
export function nonNegativeInt(name: string, value: unknown): number {
  if (typeof value !== 'number')
    throw new InvalidArgumentError(name, `expected an integer, got ${describeValue(value)}`);
  if (!Number.isInteger(value) || value < 0)
    throw new InvalidArgumentError(name, `expected a non-negative integer, got ${value}`);
  return value;
}

/**
 * Checks that `rank` (the argument `argument`, e.g. `src`, `dst`) is a rank of the
 * group `group` of `worldSize` ranks, as vLLM's GroupCoordinator asserts it.
 */
export function checkRank(argument: string, rank: number, worldSize: number, group: string): void {
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new InvalidArgumentError(
      argument,
      `Invalid ${argument} rank (${rank}) for group '${group}' of size ${worldSize}`,
    );
  }
}

/**
 * `dim` of a tensor of `shape`, negative counted from the end, as a non-negative
 * index; InvalidArgumentError('dim') with vLLM's message (GroupCoordinator.all_gather)
 * when out of range.
 */
export function normalizeDim(dim: number, shape: readonly number[]): number {
  const n = shape.length;
  if (!Number.isInteger(dim) || dim < -n || dim >= n)
    throw new InvalidArgumentError('dim', `Invalid dim (${dim}) for input tensor with shape [${shape.join(', ')}]`);
  return dim < 0 ? dim + n : dim;
}
