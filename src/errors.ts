/**
 * Every error class of gpugroup above the FFI layer, built in one place
 * (as undici's lib/core/errors.js). Each carries a stable `code` and the fields a caller
 * branches on. Errors cross actor boundaries through {@link errorToWire} /
 * {@link errorFromWire}, which rebuild the same class on the other side.
 */
import {
  CublasError,
  CudaDriverError,
  CudaError,
  GpuGroupError,
  LibraryNotFoundError,
  NcclError,
  NvrtcError,
} from '../native/errors.ts';

export { CublasError, CudaDriverError, CudaError, GpuGroupError, LibraryNotFoundError, NcclError, NvrtcError };

/** An argument was rejected before any native call. `argument` names it. */
export class InvalidArgumentError extends GpuGroupError {
  readonly argument: string;
  constructor(argument: string, message: string) {
    super('GPUGROUP_INVALID_ARGUMENT', `${argument}: ${message}`);
    this.argument = argument;
  }
}

/**
 * A wait passed its deadline. The base of one class per thing waited on (undici's
 * `ConnectTimeoutError`, `HeadersTimeoutError`, …): catch this for any timeout, or a
 * subclass for one cause. `timeoutMs` is the deadline that passed.
 */
export class TimeoutError extends GpuGroupError {
  readonly timeoutMs: number;
  constructor(code: string, message: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.timeoutMs = timeoutMs;
  }
}

/** A store operation did not complete before its deadline. */
export class StoreTimeoutError extends TimeoutError {
  readonly key: string;
  constructor(key: string, timeoutMs: number, op = 'get') {
    super('GPUGROUP_STORE_TIMEOUT', `store ${op} of key '${key}' timed out after ${timeoutMs} ms`, timeoutMs);
    this.key = key;
  }
}

/**
 * A TCP connection was not established before its deadline. `address` is `host:port`;
 * `cause` is the last refusal when the connect was retried (the store's).
 */
export class ConnectTimeoutError extends TimeoutError {
  readonly address: string;
  constructor(address: string, timeoutMs: number, what = 'TCP connection', cause?: Error) {
    super(
      'GPUGROUP_CONNECT_TIMEOUT',
      `${what} (${address}) not established within ${timeoutMs} ms${cause ? `: ${cause.message}` : ''}`,
      timeoutMs,
      cause ? { cause } : undefined,
    );
    this.address = address;
  }
}

/**
 * A host wait on a CUDA stream or event did not see the work finish before its
 * deadline (the work may still be running, or wait on a peer that never came).
 */
export class StreamTimeoutError extends TimeoutError {
  /** What was waited on: a stream's synchronize or an event's wait. */
  readonly waitedOn: 'stream' | 'event';
  constructor(waitedOn: 'stream' | 'event', timeoutMs: number) {
    super(
      'GPUGROUP_STREAM_TIMEOUT',
      `${waitedOn === 'stream' ? 'stream synchronize' : 'event wait'} did not complete within ${timeoutMs} ms`,
      timeoutMs,
    );
    this.waitedOn = waitedOn;
  }
}

/** The store connection failed, or the server answered with an error. */
export class StoreError extends GpuGroupError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GPUGROUP_STORE_ERROR', message, options);
  }
}

/** A rank actor died (exit, uncaught error, signal). */
export class RankFailedError extends GpuGroupError {
  readonly rank: number;
  readonly exitCode: number | null;
  readonly signal: string | null;
  constructor(rank: number, exitCode: number | null, signal: string | null, detail = '') {
    const how = signal ? `signal ${signal}` : `exit code ${exitCode}`;
    super('GPUGROUP_RANK_FAILED', `rank ${rank} failed (${how})${detail ? `: ${detail}` : ''}`);
    this.rank = rank;
    this.exitCode = exitCode;
    this.signal = signal;
  }
}

/** A call to a rank actor did not answer before its deadline. */
export class CallTimeoutError extends TimeoutError {
  readonly rank: number;
  readonly fn: string;
  constructor(rank: number, fn: string, timeoutMs: number) {
    super('GPUGROUP_CALL_TIMEOUT', `call '${fn}' on rank ${rank} did not finish within ${timeoutMs} ms`, timeoutMs);
    this.rank = rank;
    this.fn = fn;
  }
}

/** One entry of a communicator's flight recorder. */
export interface FlightRecord {
  op: string;
  seq: number;
  dtype: string;
  count: number;
  peer: number | null;
  /**
   * When it started (performance.now() time). NCCL operations: when the communicator's
   * watchdog first found it in flight, at its first poll after the operation was issued
   * (≤ 50 ms later while the event loop is free); NaN for one that finished, or was
   * reported, before that.
   */
  startMs: number;
  /** When it was found finished (NCCL: at a poll of the watchdog); null while it is not. */
  endMs: number | null;
}

/** A collective did not complete before its deadline; the communicator was aborted. */
export class CollectiveTimeoutError extends TimeoutError {
  readonly group: string;
  readonly op: string;
  readonly seq: number;
  readonly recent: FlightRecord[];
  constructor(group: string, op: string, seq: number, timeoutMs: number, recent: FlightRecord[]) {
    super(
      'GPUGROUP_COLLECTIVE_TIMEOUT',
      `${op} #${seq} in group '${group}' did not complete within ${timeoutMs} ms; ` +
        `the communicator was aborted. Last ops:\n${formatFlightRecords(recent)}`,
      timeoutMs,
    );
    this.group = group;
    this.op = op;
    this.seq = seq;
    this.recent = recent;
  }
}

/**
 * A MessageQueue wait passed its deadline: the writer found no free block (a reader is
 * stuck or slow) or a reader got no message. `waitingFor` names the group ranks waited on.
 */
export class QueueTimeoutError extends TimeoutError {
  readonly queue: string;
  readonly op: 'enqueue' | 'dequeue' | 'ready';
  readonly waitingFor: number[];
  constructor(
    queue: string,
    op: 'enqueue' | 'dequeue' | 'ready',
    waitingFor: number[],
    timeoutMs: number,
    detail: string,
  ) {
    super(
      'GPUGROUP_QUEUE_TIMEOUT',
      `${op} on message queue '${queue}' timed out after ${timeoutMs} ms: ${detail}`,
      timeoutMs,
    );
    this.queue = queue;
    this.op = op;
    this.waitingFor = waitingFor;
  }
}

/** receiveWeights (or another data call) before initTransferEngine, or after shutdown. */
export class WeightTransferNotInitializedError extends GpuGroupError {
  constructor(message = 'NCCL weight transfer not initialized. Call initTransferEngine() first.') {
    super('GPUGROUP_WEIGHT_TRANSFER_NOT_INITIALIZED', message);
  }
}

/**
 * The trainer and one or more workers disagree on a weight update (tensor names,
 * dtypes, shapes, packing or buffer size). Raised on every party before any data
 * moves, instead of a deadlock inside NCCL.
 */
export class WeightTransferMismatchError extends GpuGroupError {
  /** Transfer-group ranks whose update info disagreed with the trainer's. */
  readonly ranks: number[];
  /** One line per disagreeing rank: what differs. */
  readonly details: string[];
  constructor(message: string, ranks: number[], details: string[]) {
    super('GPUGROUP_WEIGHT_TRANSFER_MISMATCH', message);
    this.ranks = ranks;
    this.details = details;
  }
}

/** The KV pipe is broken: a failed send, a dead peer or a closed pipe. */
export class BrokenPipeError extends GpuGroupError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GPUGROUP_BROKEN_PIPE', message, options);
  }
}

/** A shared-memory segment could not be created, sized, opened or mapped. */
export class SharedMemoryError extends GpuGroupError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('GPUGROUP_SHM', `${path}: ${message}`, options);
    this.path = path;
  }
}

/**
 * A safetensors file (or shard index) is malformed or holds what gpugroup cannot load:
 * the header's size, JSON, offsets or a tensor's dtype. `path` names the file.
 */
export class SafetensorsError extends GpuGroupError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('GPUGROUP_SAFETENSORS', `${path}: ${message}`, options);
    this.path = path;
  }
}

/** The group (or an actor) was shut down while the operation was pending. */
export class GroupClosedError extends GpuGroupError {
  constructor(message: string) {
    super('GPUGROUP_CLOSED', message);
  }
}

/** A user function inside a rank threw a non-gpugroup error. */
export class RemoteError extends GpuGroupError {
  readonly rank: number;
  readonly remoteName: string;
  constructor(rank: number, remoteName: string, message: string) {
    super('GPUGROUP_REMOTE_ERROR', message);
    this.rank = rank;
    this.remoteName = remoteName;
  }
}

/** NVRTC refused a kernel's source; `log` is NVRTC's compile log. */
export class KernelCompileError extends GpuGroupError {
  /** The kernel (function) name that was asked for. */
  readonly kernel: string;
  readonly log: string;
  readonly options: string[];
  constructor(kernel: string, log: string, options: string[]) {
    super('GPUGROUP_KERNEL_COMPILE_ERROR', `kernel '${kernel}' did not compile (${options.join(' ')}):\n${log}`);
    this.kernel = kernel;
    this.log = log;
    this.options = options;
  }
}

/** Renders flight records as an aligned table for error messages. */
export function formatFlightRecords(recent: FlightRecord[]): string {
  if (recent.length === 0) return '  (none)';
  return recent
    .map((r) => {
      const took =
        r.endMs === null ? 'pending' : Number.isNaN(r.startMs) ? 'done' : `${(r.endMs - r.startMs).toFixed(1)} ms`;
      const peer = r.peer === null ? '' : ` peer=${r.peer}`;
      return `  #${r.seq} ${r.op} ${r.dtype}×${r.count}${peer} ${took}`;
    })
    .join('\n');
}

/** Plain-data form of an error, safe for structured clone and v8 serialization. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  rank?: number;
  fields: Record<string, unknown>;
}

const classes: Record<string, new (...args: never[]) => GpuGroupError> = {
  GpuGroupError,
  LibraryNotFoundError,
  NcclError,
  CudaError,
  CublasError,
  NvrtcError,
  CudaDriverError,
  KernelCompileError,
  InvalidArgumentError,
  TimeoutError,
  StoreTimeoutError,
  ConnectTimeoutError,
  StreamTimeoutError,
  StoreError,
  RankFailedError,
  CallTimeoutError,
  CollectiveTimeoutError,
  BrokenPipeError,
  GroupClosedError,
  RemoteError,
  SharedMemoryError,
  SafetensorsError,
  QueueTimeoutError,
  WeightTransferNotInitializedError,
  WeightTransferMismatchError,
};

/** Converts any thrown value to its wire form, keeping own enumerable fields. */
export function errorToWire(err: unknown, rank?: number): WireError {
  if (!(err instanceof Error)) {
    return { name: 'Error', message: String(err), rank, fields: {} };
  }
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(err)) {
    if (k === 'cause') continue;
    try {
      structuredClone(v);
      fields[k] = v;
    } catch {
      fields[k] = String(v);
    }
  }
  return { name: err.name, message: err.message, stack: err.stack, code: (err as GpuGroupError).code, rank, fields };
}

/**
 * Rebuilds an error from its wire form. gpugroup classes come back as the same class
 * with the same fields; any other error becomes a {@link RemoteError} that keeps the
 * original name, message and stack.
 */
export function errorFromWire(wire: WireError): Error {
  const cls = classes[wire.name];
  let err: Error;
  if (cls) {
    err = Object.create(cls.prototype) as Error;
    Object.assign(err, wire.fields);
    Object.defineProperty(err, 'message', { value: wire.message, writable: true, configurable: true });
    Object.defineProperty(err, 'name', { value: wire.name, writable: true, configurable: true });
  } else {
    err = new RemoteError(wire.rank ?? -1, wire.name, `${wire.name}: ${wire.message}`);
  }
  if (wire.stack) Object.defineProperty(err, 'stack', { value: wire.stack, writable: true, configurable: true });
  return err;
}
