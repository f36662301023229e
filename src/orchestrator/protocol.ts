/**
 * The actor protocol: one discriminated union, one encoder, one dispatcher (as in
 * comlink). Messages cross a MessagePort (thread mode) or the IPC channel with
 * `serialization: 'advanced'` (process mode), so typed arrays, Maps and BigInts
 * survive in both. Calls and their replies are correlated by a nanoid `id`; errors
 * cross as {@link WireError} and are rebuilt as the same class on the other side.
 */
import { inspect } from 'node:util';
import { errorFromWire, errorToWire, InvalidArgumentError, type WireError } from '../errors.ts';
import { Tensor } from '../tensor/index.ts';

/** Everything a rank needs to start; sent once. */
export interface RankInit {
  rank: number;
  localRank: number;
  worldSize: number;
  nodeRank: number;
  /** `cpu` or `cuda:N`. */
  device: string;
  backend: 'nccl' | 'cpu';
  mode: 'process' | 'thread';
  storeHost: string;
  storePort: number;
  /** file: URL of the user's worker module. */
  workerUrl: string;
  timeoutMs: number;
  startupTimeoutMs: number;
  tensorParallelSize: number;
  pipelineParallelSize: number;
  /** CPUs the rank's thread pins itself to, or null: the scheduler's choice. */
  cpus: number[] | null;
}

/** Every message of the protocol; `kind` says which, and who sends it. */
export type Message =
  // coordinator → rank
  | { kind: 'init'; init: RankInit }
  /** `timeoutMs`: the caller's deadline for this call, from when it was sent. */
  | { kind: 'call'; id: string; fn: string; args: unknown[]; timeoutMs?: number }
  /** A peer died or the group is closing: fire ctx.abortSignal (communicators abort on it). */
  | { kind: 'abort'; error: WireError }
  /** Tear down and exit; the coordinator kills the actor if it has not left by its deadline. */
  | { kind: 'shutdown' }
  // rank → coordinator
  | { kind: 'ready'; rank: number; exports: string[] }
  | { kind: 'result'; id: string; value: unknown }
  | { kind: 'error'; id: string; error: WireError }
  /** The rank is about to die (startup failed, uncaught exception); sent before it exits. */
  | { kind: 'fatal'; error: WireError }
  | { kind: 'log'; level: 'error' | 'warn' | 'info' | 'debug'; message: string };

/** Messages the coordinator sends. */
export type ToRank = Extract<Message, { kind: 'init' | 'call' | 'abort' | 'shutdown' }>;
/** Messages a rank sends. */
export type FromRank = Exclude<Message, ToRank>;

/**
 * The one encoder of values that need it: errors become plain data that names the rank.
 * A thrown non-Error (`throw { code: 7 }`) becomes an error whose message carries the
 * value, as JSON where it has one, and the rank.
 */
export function encodeError(err: unknown, rank: number): WireError {
  if (err instanceof Error) return errorToWire(err, rank);
  return {
    name: 'Error',
    message: `rank ${rank} threw a non-Error value: ${showThrown(err)} (throw an Error to keep a stack trace)`,
    rank,
    fields: {},
  };
}

function showThrown(value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return String(value);
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // Circular, or a BigInt inside: util.inspect shows those.
  }
  return inspect(value, { depth: 4, breakLength: Number.POSITIVE_INFINITY });
}

/** Where a Tensor sits inside a result (`result`, `result.out[1]`), looking through arrays, Maps and plain objects. */
function findTensor(value: unknown, path: string, depth: number): string | null {
  if (value instanceof Tensor) return path;
  if (depth === 0 || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findTensor(value[i], `${path}[${i}]`, depth - 1);
      if (found) return found;
    }
    return null;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const found = findTensor(v, `${path}.get(${JSON.stringify(k) ?? String(k)})`, depth - 1);
      if (found) return found;
    }
    return null;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return null;
  for (const [k, v] of Object.entries(value)) {
    const found = findTensor(v, `${path}.${k}`, depth - 1);
    if (found) return found;
  }
  return null;
}

const CLONEABLE =
  'return structured-cloneable data: numbers, strings, arrays, plain objects, Maps, typed arrays (for a tensor, `await tensor.toArray()`)';

/** The matching decoder: the same gpugroup class with its fields, or a RemoteError. */
export function decodeError(wire: WireError): Error {
  return errorFromWire(wire);
}

/**
 * Sends a call's outcome through `send`. A result the channel cannot carry (a
 * function, a class instance with native state) turns into an error reply, so the
 * call still settles.
 */
export function sendReply(
  send: (msg: FromRank) => void,
  id: string,
  fn: string,
  rank: number,
  outcome: { value: unknown } | { error: unknown },
): void {
  if ('error' in outcome) {
    send({ kind: 'error', id, error: encodeError(outcome.error, rank) });
    return;
  }
  // A Tensor would arrive as a plain object without its data (its storage is this rank's memory).
  const tensorAt = findTensor(outcome.value, 'result', 8);
  if (tensorAt) {
    const why = new InvalidArgumentError(
      'result',
      `the result of '${fn}' on rank ${rank} is or holds a Tensor (at ${tensorAt}), which cannot cross to the coordinator: its data is in this rank's memory; return \`await tensor.toArray()\` instead`,
    );
    send({ kind: 'error', id, error: encodeError(why, rank) });
    return;
  }
  try {
    send({ kind: 'result', id, value: outcome.value });
  } catch (err) {
    const why = new InvalidArgumentError(
      'result',
      `the result of '${fn}' on rank ${rank} cannot cross to the coordinator (${(err as Error).message}); ${CLONEABLE}`,
    );
    send({ kind: 'error', id, error: encodeError(why, rank) });
  }
}

/** Dispatches `msg` to the handler named by its kind (one handler per kind, checked by the compiler). */
export function dispatch<M extends { kind: string }>(
  msg: M,
  handlers: { [K in M['kind']]: (m: Extract<M, { kind: K }>) => void },
): void {
  const handler = handlers[msg.kind as M['kind']] as ((m: M) => void) | undefined;
  handler?.(msg);
}
