/**
 * The per-communicator watchdog. Issuing an operation costs one field write; a timer
 * that runs only while work is outstanding records a CUDA event behind the last
 * operation, polls it and `ncclCommGetAsyncError`, and aborts the communicator with
 * `ncclCommAbort` when NCCL reports an error, when the oldest unfinished operation is
 * older than the deadline, or when the orchestrator signals that a peer died. After
 * that, every waiter and every later operation gets the same typed error.
 *
 * Closing is not failing: the caller's stream is marked failed (its host waits and
 * reads throw) only when the abort ends work that had not completed. A communicator
 * destroyed, or aborted by a signal, after its work finished leaves the stream and its
 * tensors as they are.
 */
import { Flags, NcclResult, cuda, cudaErrorNotReady, type NcclLibrary } from '../../native/index.ts';
import { CollectiveTimeoutError, GroupClosedError, RankFailedError } from '../errors.ts';
import { log, type LogLevel } from '../log.ts';
import { failStream, pollUntil, streamDisposed } from '../tensor/index.ts';
import type { FlightRecorder } from './flight-recorder.ts';

interface WatchdogOptions {
  lib: NcclLibrary;
  comm: bigint;
  groupName: string;
  timeoutMs: number;
  recorder: FlightRecorder;
  abortSignal?: AbortSignal;
}

export class NcclWatchdog {
  readonly timeoutMs: number;
  private readonly opts: WatchdogOptions;
  private failure: Error | null = null;
  private lastIssuedSeq = -1;
  private lastStream: bigint = 0n;
  private finishedSeq = -1;
  private event = 0n;
  private eventSeq = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly i32 = new Int32Array(1);
  private readonly onAbort = (): void => {
    const reason = this.opts.abortSignal?.reason;
    this.fail(
      reason instanceof RankFailedError
        ? reason
        : new GroupClosedError(`group '${this.opts.groupName}' was aborted: ${String(reason)}`),
    );
  };

  constructor(opts: WatchdogOptions) {
    this.opts = opts;
    this.timeoutMs = opts.timeoutMs;
    opts.abortSignal?.addEventListener('abort', this.onAbort, { once: true });
    if (opts.abortSignal?.aborted) this.onAbort();
  }

  /** Throws the stored failure, if any. Called before every operation. */
  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Notes that operation `seq` was enqueued on the current stream. */
  issued(seq: number, stream?: bigint): void {
    this.lastIssuedSeq = seq;
    if (stream !== undefined) this.lastStream = stream;
    if (this.timer === null && !this.failure) this.schedule();
  }

  /**
   * Resolves when `stream` has drained, polling without blocking the event loop.
   * Rejects with the watchdog's failure, or at the deadline with a CollectiveTimeoutError
   * (and the communicator aborted).
   */
  waitIdle(stream: bigint, timeoutMs = this.timeoutMs): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const rt = cuda();
    const issuedSeq = this.lastIssuedSeq;
    return pollUntil(
      () => {
        if (this.failure) throw this.failure;
        if (rt.cudaStreamQuery(stream) !== 0) return false;
        // An idle stream is not a success if NCCL reports an asynchronous error: kernels
        // that NCCL itself ended leave the stream idle with nothing delivered.
        this.throwIfAsyncError();
        this.finishedSeq = Math.max(this.finishedSeq, issuedSeq);
        this.opts.recorder.finishThrough(this.finishedSeq);
        return true;
      },
      timeoutMs,
      () => {
        const stuck = this.opts.recorder.recent().find((r) => r.endMs === null);
        const err = this.fail(
          new CollectiveTimeoutError(
            this.opts.groupName,
            stuck?.op ?? 'synchronize',
            stuck?.seq ?? this.finishedSeq + 1,
            timeoutMs,
            this.opts.recorder.recent(),
          ),
        );
        failStream(stream, err);
        return err;
      },
    );
  }

  /**
   * Aborts the communicator with `err` unless it already failed; returns the stored
   * failure. The stream of the last operation is marked failed with `err` when that
   * work had not completed.
   */
  fail(err: Error): Error {
    return this.abort(err, 'warn', err);
  }

  /**
   * Resolves once the work issued so far has completed, so that a close that follows
   * ends nothing: the flush of ncclCommFinalize, which torch's ProcessGroupNCCL::shutdown
   * runs before ncclCommDestroy. Resolves at once when the communicator failed, NCCL
   * reports an asynchronous error or the stream is being captured, and at the deadline
   * with the work still unfinished (close() then ends it and fails its stream). Never rejects.
   */
  async drain(timeoutMs = this.timeoutMs): Promise<void> {
    // Past the deadline the work is left to close(): no error of drain's own.
    await pollUntil(
      () => this.drained(),
      timeoutMs,
      () => new Error('drain deadline'),
    ).catch(() => {});
  }

  /** drain's test: true once nothing is left that waiting could still deliver. */
  private drained(): boolean {
    if (this.failure || this.lastIssuedSeq <= this.finishedSeq || this.lastStream === 0n) return true;
    if (streamDisposed(this.lastStream)) return true;
    try {
      this.opts.lib.ncclCommGetAsyncError(this.opts.comm, this.i32);
      if (this.i32[0] !== NcclResult.ncclSuccess && this.i32[0] !== NcclResult.ncclInProgress) return true;
      if (this.capturing()) return true;
      const state = cuda().cudaStreamQuery(this.lastStream);
      if (state === 0) {
        this.finishedSeq = this.lastIssuedSeq;
        this.opts.recorder.finishThrough(this.finishedSeq);
      }
      return state !== cudaErrorNotReady;
    } catch {
      return true;
    }
  }

  /**
   * Ends the watchdog and releases the communicator (idempotent), for destroy(). With
   * its work completed nothing else changes; work still in flight is aborted with it,
   * and its stream fails with `reason`, saying so.
   */
  close(reason: Error): void {
    this.abort(
      reason,
      'debug',
      new GroupClosedError(`${reason.message} with work in flight: what it enqueued on this stream never completed`),
    );
  }

  private abort(err: Error, level: LogLevel, streamError: Error): Error {
    if (this.failure) return this.failure;
    this.failure = err;
    // Asked before ncclCommAbort: the abort ends running kernels and leaves their stream
    // idle without their results.
    const inFlight = this.workInFlight();
    log(
      inFlight ? 'warn' : level,
      'nccl',
      `aborting communicator of group '${this.opts.groupName}'${inFlight ? ' with work in flight' : ''}: ${err.message}`,
    );
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      // ncclCommAbort, not ncclCommDestroy, also for a clean close: it is local and never
      // blocks, where ncclCommDestroy may wait on peers (NCCL docs, ncclCommDestroy).
      this.opts.lib.ncclCommAbort(this.opts.comm);
    } catch (abortErr) {
      log('error', 'nccl', `ncclCommAbort failed: ${(abortErr as Error).message}`);
    }
    this.releaseEvent();
    if (inFlight) failStream(this.lastStream, streamError);
    this.opts.abortSignal?.removeEventListener('abort', this.onAbort);
    return err;
  }

  /**
   * True when work this communicator enqueued may not have completed: operations were
   * issued past the last one known finished, and neither the event recorded behind the
   * last operation nor its stream says they are done. An asynchronous NCCL error counts
   * as unfinished work whatever the stream says: NCCL ends its kernels then, and the
   * stream goes idle with nothing delivered.
   */
  private workInFlight(): boolean {
    if (this.lastIssuedSeq <= this.finishedSeq || this.lastStream === 0n) return false;
    // Nobody can wait on a disposed stream, and its handle may be another stream's now.
    if (streamDisposed(this.lastStream)) return false;
    try {
      this.opts.lib.ncclCommGetAsyncError(this.opts.comm, this.i32);
      const state = this.i32[0];
      if (state !== NcclResult.ncclSuccess && state !== NcclResult.ncclInProgress) return true;
      const rt = cuda();
      if (this.event !== 0n && this.eventSeq === this.lastIssuedSeq && rt.cudaEventQuery(this.event) === 0)
        return false;
      // Not ready, or a stream in an error state.
      return rt.cudaStreamQuery(this.lastStream) !== 0;
    } catch {
      return true;
    }
  }

  private schedule(delayMs = Math.min(50, Math.max(1, this.timeoutMs / 8))): void {
    this.timer = setTimeout(() => this.tick(), delayMs);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = null;
    if (this.failure) return;
    const rt = cuda();
    const now = performance.now();
    // Completed work: an event recorded behind the last issued op tells how far the stream got.
    if (this.event !== 0n && this.eventSeq > this.finishedSeq && rt.cudaEventQuery(this.event) !== cudaErrorNotReady) {
      this.finishedSeq = this.eventSeq;
      this.opts.recorder.finishThrough(this.finishedSeq);
    }
    if (this.lastIssuedSeq > this.finishedSeq && this.eventSeq < this.lastIssuedSeq && !this.capturing()) {
      if (this.event === 0n) {
        const out = new BigUint64Array(1);
        rt.cudaEventCreateWithFlags(out, Flags.eventDisableTiming);
        this.event = out[0];
      }
      rt.cudaEventRecord(this.event, this.lastStream);
      this.eventSeq = this.lastIssuedSeq;
    }
    try {
      this.throwIfAsyncError();
    } catch {
      return;
    }
    // Each operation's deadline is its start + timeoutMs, or the deadline of the call
    // that issued it when that comes first (call-deadline.ts). Asked after the completed
    // work is marked: an operation still unfinished here gets this poll as its start.
    let overdue = this.lastIssuedSeq > this.finishedSeq ? this.opts.recorder.overdue(this.timeoutMs, now) : null;
    // A call's deadline can be near an operation's start: look at the stream once more
    // before calling work that has in fact completed overdue.
    if (overdue && this.eventSeq > this.finishedSeq && rt.cudaEventQuery(this.event) !== cudaErrorNotReady) {
      this.finishedSeq = this.eventSeq;
      this.opts.recorder.finishThrough(this.finishedSeq);
      overdue = this.lastIssuedSeq > this.finishedSeq ? this.opts.recorder.overdue(this.timeoutMs, now) : null;
    }
    if (overdue) {
      this.fail(
        new CollectiveTimeoutError(
          this.opts.groupName,
          overdue.record.op,
          overdue.record.seq,
          overdue.timeoutMs,
          this.opts.recorder.recent(),
        ),
      );
      return;
    }
    if (this.lastIssuedSeq > this.finishedSeq) this.schedule();
  }

  /** Fails the watchdog (and throws) when NCCL reports an asynchronous error. */
  private throwIfAsyncError(): void {
    this.opts.lib.ncclCommGetAsyncError(this.opts.comm, this.i32);
    const state = this.i32[0];
    if (state !== NcclResult.ncclSuccess && state !== NcclResult.ncclInProgress) {
      throw this.fail(this.opts.lib.errorFor(state, 'ncclCommGetAsyncError'));
    }
  }

  private capturing(): boolean {
    cuda().cudaStreamIsCapturing(this.lastStream, this.i32);
    return this.i32[0] !== 0;
  }

  private releaseEvent(): void {
    if (this.event === 0n) return;
    try {
      cuda().cudaEventDestroy(this.event);
    } catch {
      // The context may already be torn down after an abort; nothing more to free.
    }
    this.event = 0n;
  }
}
