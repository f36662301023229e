/**
 * The trainer↔workers group of a weight transfer: a StatelessProcessGroup on the
 * trainer's store (control plane: the announcement and votes of ./control.ts) and a
 * communicator over it (data plane): NCCL on `cuda:N`, the CPU communicator on `cpu`.
 * vLLM hands the trainer the bare PyNcclCommunicator; we hand it this pair, because
 * the control message needs the store and the store must be closed by somebody.
 */
import { createCommunicator, type CpuTransport, type DeviceCommunicator } from '../comm/index.ts';
import { GroupClosedError, InvalidArgumentError } from '../errors.ts';
import { StatelessProcessGroup } from '../store/index.ts';
import { parseDevice } from '../tensor/index.ts';
import type { NcclWeightTransferInitInfo } from './types.ts';

/** Options of {@link WeightTransferGroup.create}. */
export interface WeightTransferGroupOptions {
  /** `cuda:N` (NCCL; must be this thread's current device) or `cpu` (CPU communicator). */
  device: string;
  /** Deadline of every store wait and every collective, in ms. Default 120 000. */
  timeoutMs?: number;
  /** When it fires, pending and later transfers fail and the communicator aborts. */
  abortSignal?: AbortSignal;
  /** CPU only: `sab` (every party a thread of one process) or `shm`; default: picked from where the parties run. */
  cpuTransport?: CpuTransport;
}

/** Where a party that failed mid-transfer tells the others (in the group's own store). */
const FAILED_KEY = 'weight_transfer/failed';
const WATCH_SLICE_MS = 500;

/** The control and data plane of one trainer→workers transfer group. */
export class WeightTransferGroup {
  private closing: Promise<void> | null = null;
  /** Set once a transfer failed on some party: the communicator is aborted, the group unusable. */
  private broken: Error | null = null;

  private constructor(
    /** Control plane (store-backed objects). */
    readonly processGroup: StatelessProcessGroup,
    /** Data plane (broadcasts from the trainer). */
    readonly communicator: DeviceCommunicator,
    /** Deadline of waits, in ms. */
    readonly timeoutMs: number,
    private readonly abortController: AbortController,
  ) {}

  /**
   * Runs the data-moving part of one transfer so that a failure on any party ends it
   * on every party within about a second, instead of leaving the others blocked in a
   * broadcast until the deadline: the party that fails writes what happened to the
   * group's store and aborts its communicator; the others watch that key while they
   * transfer, abort theirs and throw GroupClosedError naming the failed party. After
   * that the group is unusable (close it and create a new one), as after ncclCommAbort.
   */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.broken) throw this.broken;
    let done = false;
    const remote = this.watchFailure(() => done);
    const work = fn();
    work.catch(() => undefined);
    try {
      return await Promise.race([work, remote]);
    } catch (err) {
      if (!this.broken) {
        this.broken = err as Error;
        const what = `transfer rank ${this.rank} failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
        await this.processGroup.store.set(FAILED_KEY, Buffer.from(what)).catch(() => undefined);
        this.abortController.abort(new GroupClosedError(`weight transfer aborted: ${what}`));
      }
      throw err;
    } finally {
      done = true;
    }
  }

  /** Rejects when another party reports a failure; never resolves otherwise (stops once `finished()`). */
  private watchFailure(finished: () => boolean): Promise<never> {
    return new Promise<never>((_, reject) => {
      void (async () => {
        const store = this.processGroup.store;
        while (!finished()) {
          try {
            await store.wait([FAILED_KEY], WATCH_SLICE_MS);
          } catch (err) {
            if ((err as Error).name === 'StoreTimeoutError') continue; // the slice ended
            return; // the store is going away: the transfer itself will say so
          }
          if (finished() || this.broken) return;
          const what = Buffer.from(await store.get(FAILED_KEY).catch(() => new Uint8Array())).toString();
          const err = new GroupClosedError(`weight transfer aborted: ${what || 'another party failed'}`);
          this.broken = err;
          this.abortController.abort(err);
          reject(err);
          return;
        }
      })();
    });
  }

  /** This party's rank in the group (the trainer is 0). */
  get rank(): number {
    return this.processGroup.rank;
  }

  get worldSize(): number {
    return this.processGroup.worldSize;
  }

  /** `cpu` or `cuda:N`. */
  get device(): string {
    return this.communicator.device;
  }

  /**
   * Collective over the `info.worldSize` parties: rank 0 serves the store at
   * masterAddress:masterPort, everyone connects, then builds the communicator.
   */
  static async create(
    info: NcclWeightTransferInitInfo,
    rank: number,
    opts: WeightTransferGroupOptions,
  ): Promise<WeightTransferGroup> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs))
      throw new InvalidArgumentError('timeoutMs', `must be a positive finite number, got ${timeoutMs}`);
    parseDevice(opts.device);
    if (!Number.isInteger(rank) || rank < 0 || rank >= info.worldSize) {
      throw new InvalidArgumentError(
        'rank',
        `transfer-group rank ${rank} is out of range [0, ${info.worldSize}) (worldSize ${info.worldSize})`,
      );
    }
    opts.abortSignal?.throwIfAborted();
    const pg = await StatelessProcessGroup.create({
      host: info.masterAddress,
      port: info.masterPort,
      rank,
      worldSize: info.worldSize,
      storeTimeoutMs: timeoutMs,
      // The trainer serves the store. A blocking NCCL call (a broadcast connecting on first
      // use waits for every worker) would freeze a store served from its own event loop
      // while a worker still waits there for the update's control message.
      storeInThread: opts.device !== 'cpu',
    });
    // Unique per store, so two transfer groups in one process never share a SAB channel name.
    const groupName = `weight_transfer@${info.masterAddress}:${info.masterPort}`;
    // The communicator aborts on the caller's signal and on a failure reported by any party (guard).
    const controller = new AbortController();
    const forward = () => controller.abort(opts.abortSignal?.reason);
    opts.abortSignal?.addEventListener('abort', forward, { once: true });
    try {
      const communicator = await createCommunicator({
        group: pg,
        device: opts.device,
        groupName,
        timeoutMs,
        abortSignal: controller.signal,
        transport: opts.cpuTransport,
      });
      return new WeightTransferGroup(pg, communicator, timeoutMs, controller);
    } catch (err) {
      await pg.close();
      throw err;
    }
  }

  /** Destroys the communicator and closes the store connection (the trainer's also stops the store). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.communicator.destroy();
      } finally {
        await this.processGroup.close();
      }
    })();
    return this.closing;
  }
}
