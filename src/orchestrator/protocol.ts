/**
 * The actor protocol: one discriminated union, one encoder, one dispatcher (as in
 * comlink). Messages cross a MessagePort (thread mode) or the IPC channel with
 * `serialization: 'advanced'` (process mode), so typed arrays, Maps and BigInts
 * survive in both. Calls and their replies are correlated by a nanoid `id`; errors
 * cross as {@link WireError} and are rebuilt as the same class on the other side.
 */
import { errorFromWire, errorToWire, InvalidArgumentError, type WireError } from '../errors.ts';

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
}

/** Every message of the protocol; `kind` says which, and who sends it. */
export type Message =
  // coordinator → rank
  | { kind: 'init'; init: RankInit }
  | { kind: 'call'; id: string; fn: string; args: unknown[] }
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

/** The one encoder of values that need it: errors become plain data that names the rank. */
export function encodeError(err: unknown, rank: number): WireError {
  return errorToWire(err, rank);
}

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
  try {
    send({ kind: 'result', id, value: outcome.value });
  } catch (err) {
    const why = new InvalidArgumentError(
      'result',
      `the result of '${fn}' on rank ${rank} cannot cross to the coordinator (${(err as Error).message}); return structured-cloneable data`,
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
