/**
 * The actor protocol: one discriminated union, one encoder, one dispatcher (STYLE:
 * comlink). Messages cross a MessagePort (thread mode) or the IPC channel with
 * `serialization: 'advanced'` (process mode), so typed arrays, Maps and BigInts
 * survive in both.
 */
import type { WireError } from '../errors.ts';

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
  tensorParallelSize: number;
  pipelineParallelSize: number;
}

/** Coordinator → rank. */
export type ToRank =
  | { kind: 'init'; init: RankInit }
  | { kind: 'call'; id: string; fn: string; args: unknown[] }
  /** A peer died or the group is closing: abort communicators, fail waits. */
  | { kind: 'abort'; error: WireError }
  | { kind: 'shutdown' };

/** Rank → coordinator. */
export type FromRank =
  | { kind: 'ready'; rank: number; exports: string[] }
  | { kind: 'result'; id: string; value: unknown }
  | { kind: 'error'; id: string; error: WireError }
  /** Startup failed; the rank exits after sending it. */
  | { kind: 'fatal'; error: WireError }
  | { kind: 'log'; level: 'error' | 'warn' | 'info' | 'debug'; message: string };

export type Message = ToRank | FromRank;

/** Dispatches `msg` to the handler named by its kind. */
export function dispatch<M extends { kind: string }>(msg: M, handlers: { [K in M['kind']]: (m: Extract<M, { kind: K }>) => void }): void {
  const handler = handlers[msg.kind as M['kind']] as ((m: M) => void) | undefined;
  handler?.(msg);
}
