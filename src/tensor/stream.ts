/**
 * Devices, streams and events of this thread (one rank actor owns one device, and
 * CUDA's current device is per host thread). The current stream is where every
 * tensor operation and collective is enqueued. Host waits poll with a deadline and
 * never block the event loop, so an abort can still get through.
 */
import { Flags, MemPoolAttr, cuda, cudaErrorNotReady } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';
import { InvalidArgumentError, StreamTimeoutError } from '../errors.ts';
import { releaseCachedBlocks } from './block-cache.ts';

let deviceOrdinal = -1;
const streamFailures = new Map<bigint, Error>();

/**
 * Marks `stream` as failed: a communicator that aborted work enqueued on it before that
 * work completed calls this, so that host waits on the stream (synchronize, toArray)
 * throw `error` instead of returning data the aborted work never produced. Closing a
 * communicator whose work completed does not (see NcclWatchdog). The mark lasts as long
 * as the stream: CUDA may hand a disposed stream's handle to a stream created later,
 * which starts without it.
 */
export function failStream(stream: bigint, error: Error): void {
  if (!streamFailures.has(stream)) streamFailures.set(stream, error);
}

/** Handles of streams disposed here and not handed out again by CUDA since. */
const disposedStreams = new Set<bigint>();

/**
 * True when `stream` was disposed (and no stream created since got its handle): no
 * host wait can reach it anymore, and CUDA calls on its handle are invalid.
 */
export function streamDisposed(stream: bigint): boolean {
  return disposedStreams.has(stream);
}

/** Throws the failure recorded for `stream`, if any. */
export function throwIfStreamFailed(stream: bigint): void {
  const err = streamFailures.get(stream);
  if (err) throw err;
}
const poolsConfigured = new Set<number>();

/**
 * Makes `ordinal` this thread's current device. The first time for a device, its
 * stream-ordered memory pool is told to keep freed memory (release threshold = max),
 * so that a freed buffer comes back from the pool instead of from the driver.
 */
export function setDevice(ordinal: number): void {
  if (!Number.isInteger(ordinal) || ordinal < 0)
    throw new InvalidArgumentError('device', `invalid CUDA ordinal ${ordinal}`);
  const rt = cuda();
  rt.cudaSetDevice(ordinal);
  deviceOrdinal = ordinal;
  if (!poolsConfigured.has(ordinal)) {
    const pool = new BigUint64Array(1);
    rt.cudaDeviceGetDefaultMemPool(pool, ordinal);
    rt.cudaMemPoolSetAttribute(pool[0], MemPoolAttr.releaseThreshold, new BigUint64Array([0xffffffffffffffffn]));
    poolsConfigured.add(ordinal);
  }
}

/** This thread's current CUDA device ordinal. */
export function currentDevice(): number {
  if (deviceOrdinal < 0) {
    const out = new Int32Array(1);
    cuda().cudaGetDevice(out);
    deviceOrdinal = out[0];
  }
  return deviceOrdinal;
}

/**
 * Polls `done()` until it returns true: a short spin (`spinMs`), then the event loop on
 * setImmediate turns for GPUGROUP_POLL_MS (read at the first wait, default 5 ms: a collective
 * waiting on a slower peer ends within µs of it), then 1 ms timers for long waits.
 * Rejects with `onTimeout()` past the deadline, and with what `done()` throws.
 */
export function pollUntil(
  done: () => boolean,
  timeoutMs: number,
  onTimeout: () => Error,
  // 0.1 ms: a short copy or kernel (a 1 MiB pinned copy takes ~30 µs) ends inside the
  // spin instead of an event-loop turn later; a longer wait spins this once, then yields.
  spinMs = 0.1,
): Promise<void> {
  const spinUntil = performance.now() + spinMs;
  try {
    do {
      if (done()) return Promise.resolve();
    } while (performance.now() < spinUntil);
  } catch (err) {
    // A failed stream rejects; a Promise-returning wait never throws synchronously.
    return Promise.reject(err);
  }
  const start = performance.now();
  const deadline = start + timeoutMs;
  return new Promise((resolve, reject) => {
    const step = (): void => {
      try {
        if (done()) {
          resolve();
          return;
        }
      } catch (err) {
        reject(err);
        return;
      }
      const now = performance.now();
      if (now > deadline) {
        reject(onTimeout());
        return;
      }
      if (now - start < settingAtFirstUse('GPUGROUP_POLL_MS')) setImmediate(step);
      else setTimeout(step, 1);
    };
    setImmediate(step);
  });
}

/** A CUDA stream (non-blocking with respect to the legacy default stream). */
export class Stream {
  /** The cudaStream_t. */
  readonly handle: bigint;
  readonly device: number;
  private disposed = false;
  /** The event other streams wait on (see waitStream), made on first use. */
  private marker: CudaEvent | null = null;
  /** @internal device blocks freed on this stream, kept for its next allocations, by size class (./block-cache.ts). */
  readonly blocks = new Map<number, bigint[]>();

  constructor(handle?: bigint) {
    this.device = currentDevice();
    if (handle !== undefined) {
      this.handle = handle;
      return;
    }
    const out = new BigUint64Array(1);
    cuda().cudaStreamCreateWithFlags(out, Flags.streamNonBlocking);
    this.handle = out[0];
    // CUDA may reuse a destroyed stream's handle: the new stream starts clean.
    disposedStreams.delete(this.handle);
    streamFailures.delete(this.handle);
  }

  /** True when all work enqueued so far has finished. */
  query(): boolean {
    return cuda().cudaStreamQuery(this.handle) !== cudaErrorNotReady;
  }

  /** Resolves when the stream drains, without blocking the event loop. */
  synchronize(timeoutMs = 120_000): Promise<void> {
    return pollUntil(
      () => {
        throwIfStreamFailed(this.handle);
        return this.query();
      },
      timeoutMs,
      () => new StreamTimeoutError('stream', timeoutMs),
    );
  }

  /** Makes this stream wait (on the device) for the work recorded in `event`. */
  waitEvent(event: CudaEvent): void {
    cuda().cudaStreamWaitEvent(this.handle, event.handle, 0);
  }

  /** Makes this stream wait for everything enqueued on `other` so far. */
  waitStream(other: Stream): void {
    // One event per stream, recorded again each time: a wait takes the state of the
    // event's latest record when it is issued, so reuse is safe and saves two calls.
    other.marker ??= new CudaEvent();
    const ev = other.marker;
    ev.record(other);
    this.waitEvent(ev);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (current === this) current = null;
    // Blocks cached for this stream go back to the pool first, ordered after its work:
    // no later allocation can take them from a destroyed stream.
    releaseCachedBlocks(this);
    this.marker?.dispose();
    cuda().cudaStreamDestroy(this.handle);
    streamFailures.delete(this.handle);
    disposedStreams.add(this.handle);
  }
}

/** A CUDA event, with timing unless `timing` is false. */
export class CudaEvent {
  readonly handle: bigint;
  private disposed = false;

  constructor(timing = false) {
    const out = new BigUint64Array(1);
    cuda().cudaEventCreateWithFlags(out, timing ? 0 : Flags.eventDisableTiming);
    this.handle = out[0];
  }

  record(stream: Stream = currentStream()): this {
    cuda().cudaEventRecord(this.handle, stream.handle);
    return this;
  }

  query(): boolean {
    return cuda().cudaEventQuery(this.handle) !== cudaErrorNotReady;
  }

  /**
   * Resolves once the recorded work completed, polling with a deadline. `spin: false`
   * skips the short synchronous spin, for a wait nobody is blocked on.
   */
  wait(timeoutMs = 120_000, { spin = true }: { spin?: boolean } = {}): Promise<void> {
    return pollUntil(
      () => this.query(),
      timeoutMs,
      () => new StreamTimeoutError('event', timeoutMs),
      spin ? undefined : 0,
    );
  }

  /** Milliseconds between `start` (recorded earlier) and this event; both need timing. */
  elapsedMsSince(start: CudaEvent): number {
    const out = new Float32Array(1);
    cuda().cudaEventElapsedTime(out, start.handle, this.handle);
    return out[0];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    cuda().cudaEventDestroy(this.handle);
  }
}

let current: Stream | null = null;

/** The stream work is enqueued on; created on first use for the current device. */
export function currentStream(): Stream {
  if (current === null || current.device !== currentDevice()) current = new Stream();
  return current;
}

/** Replaces the current stream; returns the previous one. */
export function setCurrentStream(stream: Stream): Stream | null {
  const previous = current;
  current = stream;
  return previous;
}

/**
 * Runs `fn` synchronously with `stream` current (no stream: as is), then restores the
 * previous stream. For enqueueing on a chosen stream without keeping it current across
 * an await: other calls on the same actor must keep enqueueing on their own stream
 * while a transfer awaits. Await what `fn` returns outside.
 */
export function enqueueOn<T>(stream: Stream | null | undefined, fn: () => T): T {
  if (!stream) return fn();
  const previous = setCurrentStream(stream);
  try {
    return fn();
  } finally {
    current = previous;
  }
}

/** Runs `fn` with `stream` current, restoring the previous stream afterwards (also for async fn). */
export async function withStream<T>(stream: Stream, fn: () => T | Promise<T>): Promise<T> {
  const previous = setCurrentStream(stream);
  try {
    return await fn();
  } finally {
    current = previous;
  }
}
