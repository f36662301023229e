/**
 * vLLM's PyNcclPipe (vllm/distributed/kv_transfer/kv_pipe/pynccl_pipe.py): a FIFO pipe of tensors between the ranks of a KV
 * transfer group (disaggregated prefill → decode). Metadata (dtype and shape, or null)
 * travels over the pipe's own StatelessProcessGroup; data over its own communicator:
 * NCCL on `cuda:N`, the CPU communicator on `cpu`. Sends go to (kvRank + 1) % N,
 * receives come from (kvRank − 1) % N.
 *
 * Sends run in call order on one chain, receives on another: NCCL matches point-to-point
 * calls in issue order per communicator, and each direction has a communicator and a
 * stream of its own, so a rank's receives never wait behind its sends (vLLM's single
 * worker thread runs both in one order). The receiver keeps the next receive posted:
 * once recvTensor takes an item, the receive of the following one is issued as soon as
 * its metadata is in, so its data moves while the caller works. A posted receive cannot
 * block the rank's own sends: they are on the other communicator and stream.
 *
 * Deliberate changes from vLLM's PyNcclPipe:
 * - Back-pressure counts the new tensor before the check: a send waits while the bytes
 *   in flight plus its own exceed `bufferSizeBytes` (a tensor larger than the whole
 *   buffer waits until the pipe is empty, then goes alone), with a deadline.
 * - Errors are not swallowed: a failed send or receive, a dead peer (abortSignal, a
 *   lost store connection, or the pipe's own peer watch, ./peer-watch.ts) or close()
 *   breaks the pipe; the pending and every later call reject with BrokenPipeError
 *   carrying the cause, and the pipe's communicator is aborted so nothing waits on a
 *   gone peer. Bytes are released either way. close() first lets what is already
 *   queued go out, as vLLM's pool shutdown waits.
 * - The returned promises never become unhandled rejections when ignored (sendTensor's
 *   usually is): a failure is reported by the next call instead. Only a bad argument
 *   rejects loudly, since no later call could report it.
 *
 * The store: as in vLLM, kvRank 0 serves the group's store at kvIp:(kvPort + portOffset)
 * and every rank connects there; on a device the store runs in a worker thread of
 * kvRank 0 (NCCL connection setup blocks its thread while the peer needs the store).
 */
import { createCommunicator, split, type DeviceCommunicator } from '../comm/index.ts';
import { BrokenPipeError, InvalidArgumentError, StoreTimeoutError } from '../errors.ts';
import { StatelessProcessGroup } from '../store/index.ts';
import { PeerWatch } from './peer-watch.ts';
import {
  CudaEvent,
  Stream,
  Tensor,
  currentStream,
  enqueueOn,
  parseDevice,
  setDevice,
  type DType,
} from '../tensor/index.ts';

/** Options of a pipe (vLLM's KVTransferConfig fields, camelCase). */
export interface NcclPipeOptions {
  /** This process's local rank (selects `cuda:{localRank}` when `device` is `cuda`). */
  localRank: number;
  /** This rank in the KV group (0 serves the group's store). */
  kvRank: number;
  /** Ranks in the KV group. */
  kvParallelSize: number;
  kvIp: string;
  kvPort: number;
  /** Added to kvPort, so that several pipes can share one config. Default 0. */
  portOffset?: number;
  /** `cuda` (→ `cuda:{localRank}`), `cuda:N` or `cpu`. Default `cuda`. */
  device?: string;
  /** Back-pressure threshold, bytes in flight. Default 1 GiB (vLLM's kv_buffer_size default is 1e9). */
  bufferSizeBytes?: number;
  /** Deadline of every wait (store, back-pressure, transfer), ms. Default 120 000. */
  storeTimeoutMs?: number;
  /** When it fires (a peer died), the pipe breaks. */
  abortSignal?: AbortSignal;
}

/** What travels ahead of each item. */
type Metadata = { dtype: DType; shape: number[] } | null;

/** Metadata reads kept in flight ahead of the receiver. */
const METADATA_AHEAD = 4;

/** A receive issued ahead of recvTensor: its tensor (or null) and the event after its receive. */
interface Posted {
  tensor: Tensor | null;
  arrived: CudaEvent | null;
}
/** A read-ahead waits as long as the pipe lives (setTimeout's largest delay, ~24.8 days). */
const NO_DEADLINE_MS = 2 ** 31 - 1;

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** vLLM's KVPipeBase: a FIFO of tensors (or null) between two ranks. */
export interface KVPipeBase {
  sendTensor(t: Tensor | null): Promise<void>;
  recvTensor(): Promise<Tensor | null>;
  close(): Promise<void>;
}

/** The KV-cache pipe over NCCL (or the CPU communicator). */
export class NcclPipe implements KVPipeBase {
  readonly device: string;
  readonly kvRank: number;
  readonly kvParallelSize: number;
  readonly bufferSizeBytes: number;
  readonly timeoutMs: number;
  /** Resolves once the group and the communicator are up; the constructor starts it. */
  readonly ready: Promise<void>;
  private group: StatelessProcessGroup | null = null;
  /** Every communicator of the pipe (NCCL: one per link colour, see linkComm; CPU: one). */
  private comms: DeviceCommunicator[] = [];
  private sendComm: DeviceCommunicator | null = null;
  private recvComm: DeviceCommunicator | null = null;
  /** Device only: the streams of the two directions. */
  private sendStream: Stream | null = null;
  private recvStream: Stream | null = null;
  /** Sends, in call order; each link resolves once its send is enqueued (or failed). */
  private sendChain: Promise<unknown> = Promise.resolve();
  /** Receives, in call order. */
  private recvChain: Promise<unknown> = Promise.resolve();
  /** The receive posted ahead of the next recvTensor, if any. */
  private posted: Promise<Posted> | null = null;
  /** Completions of issued sends, in order (each frees its bytes). */
  private completions: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private readonly waiters: Waiter[] = [];
  private failure: BrokenPipeError | null = null;
  /** Rejecters of the pending calls: a break rejects them at once (each leaves when settled). */
  private readonly pendingCalls = new Set<(err: BrokenPipeError) => void>();
  /** Aborts the pipe's communicator when the pipe breaks. */
  private readonly aborter = new AbortController();
  private watch: PeerWatch | null = null;
  private closing: Promise<void> | null = null;
  /** Items sent so far (the first one's metadata write is awaited, see send()). */
  private sentItems = 0;
  /** Events of finished sends and handed-out receives, for reuse (a new one costs two driver calls). */
  private readonly spareEvents: CudaEvent[] = [];
  /** Metadata reads issued ahead of recvTensor, oldest first. */
  private readonly metadataAhead: Promise<Metadata>[] = [];
  private readonly onAbort: () => void;

  constructor(private readonly opts: NcclPipeOptions) {
    for (const key of ['localRank', 'kvRank', 'kvParallelSize', 'kvPort'] as const) {
      const v = opts?.[key];
      if (!Number.isInteger(v) || v < 0)
        throw new InvalidArgumentError(key, `must be a non-negative integer, got ${String(v)}`);
    }
    if (opts.kvParallelSize < 2)
      throw new InvalidArgumentError('kvParallelSize', `a pipe needs at least 2 ranks, got ${opts.kvParallelSize}`);
    if (opts.kvRank >= opts.kvParallelSize)
      throw new InvalidArgumentError('kvRank', `${opts.kvRank} is out of range [0, ${opts.kvParallelSize})`);
    if (typeof opts.kvIp !== 'string' || opts.kvIp === '')
      throw new InvalidArgumentError('kvIp', `expected a host name or address, got ${String(opts.kvIp)}`);
    const device = opts.device ?? 'cuda';
    this.device = device === 'cuda' ? `cuda:${opts.localRank}` : device;
    parseDevice(this.device);
    this.bufferSizeBytes = opts.bufferSizeBytes ?? 1e9;
    if (!(this.bufferSizeBytes > 0))
      throw new InvalidArgumentError('bufferSizeBytes', `must be positive, got ${this.bufferSizeBytes}`);
    this.timeoutMs = opts.storeTimeoutMs ?? 120_000;
    this.kvRank = opts.kvRank;
    this.kvParallelSize = opts.kvParallelSize;
    this.onAbort = () =>
      this.fail(
        new BrokenPipeError(`KV pipe (rank ${this.kvRank}) aborted: ${describe(opts.abortSignal?.reason)}`, {
          cause: opts.abortSignal?.reason,
        }),
      );
    opts.abortSignal?.addEventListener('abort', this.onAbort, { once: true });
    if (opts.abortSignal?.aborted) this.onAbort();
    this.ready = this.connect();
    // Reported by every call that awaits it; never an unhandled rejection.
    this.ready.catch(() => undefined);
  }

  /** A connected pipe: the constructor, then `ready`. Collective with the peers. */
  static async create(opts: NcclPipeOptions): Promise<NcclPipe> {
    const pipe = new NcclPipe(opts);
    try {
      await pipe.ready;
    } catch (err) {
      await pipe.close();
      throw err;
    }
    return pipe;
  }

  /** Bytes admitted and not yet sent (what back-pressure counts). */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  private get next(): number {
    return (this.kvRank + 1) % this.kvParallelSize;
  }

  private get prev(): number {
    return (this.kvRank - 1 + this.kvParallelSize) % this.kvParallelSize;
  }

  private async connect(): Promise<void> {
    const o = this.opts;
    try {
      const ordinal = parseDevice(this.device);
      if (ordinal !== null) setDevice(ordinal);
      this.group = await StatelessProcessGroup.create({
        host: o.kvIp,
        port: o.kvPort + (o.portOffset ?? 0),
        rank: o.kvRank,
        worldSize: o.kvParallelSize,
        storeTimeoutMs: this.timeoutMs,
        // NCCL point-to-point calls can block kvRank 0's thread while a peer still needs the store.
        storeInThread: ordinal !== null,
        // Metadata goes rank to rank on a direct connection: no store round trip per item.
        directPointToPoint: true,
      });
      await this.group.barrier();
      this.watch = await PeerWatch.open(this.group, o.kvIp, this.timeoutMs, (what) => {
        this.fail(new BrokenPipeError(`KV pipe (rank ${this.kvRank}): ${what}; the peer is gone`));
      });
      if (this.failure) throw this.failure;
      const common = {
        group: this.group,
        groupName: `kv-pipe:${o.kvPort + (o.portOffset ?? 0)}`,
        timeoutMs: this.timeoutMs,
        abortSignal: this.aborter.signal,
      };
      if (ordinal === null) {
        // Host sends and receives never block each other: one communicator serves both.
        const comm = await createCommunicator({ ...common, device: this.device });
        this.comms = [comm];
        this.sendComm = comm;
        this.recvComm = comm;
        return;
      }
      // One communicator per link colour, the others split from the first (no new
      // rendezvous): each rank sends on one and receives on another.
      const base = await createCommunicator({ ...common, device: this.device, splittable: true });
      const comms: DeviceCommunicator[] = [base];
      this.comms = comms;
      const colours = this.kvParallelSize % 2 === 0 ? 2 : 3;
      while (comms.length < colours) {
        const child = await split(base, {
          ...common,
          groupName: `${common.groupName}/${comms.length}`,
          color: 0,
          key: this.kvRank,
        });
        if (!child) throw new BrokenPipeError(`KV pipe (rank ${this.kvRank}): no communicator from the split`);
        comms.push(child);
      }
      this.sendComm = comms[linkComm(this.kvRank, this.kvParallelSize)];
      this.recvComm = comms[linkComm(this.prev, this.kvParallelSize)];
      // kvRank 0 serves the pipe's store on its event loop: a first send or receive that
      // blocks its thread until the peer joins (NCCL's) would starve the peer of the
      // metadata it needs to post its receive, so the connections open now, per
      // communicator in the same order on every rank, each on the links it serves here.
      for (const comm of comms) {
        const sendTo = comm === this.sendComm ? this.next : null;
        const recvFrom = comm === this.recvComm ? this.prev : null;
        if (sendTo !== null || recvFrom !== null) await comm.openPointToPoint(sendTo, recvFrom, this.timeoutMs);
      }
      this.sendStream = new Stream();
      this.recvStream = new Stream();
    } catch (err) {
      if (err === this.failure) throw err;
      throw this.fail(
        new BrokenPipeError(
          `KV pipe (rank ${this.kvRank}) could not connect to ${o.kvIp}:${o.kvPort + (o.portOffset ?? 0)}: ${describe(err)}`,
          { cause: err },
        ),
      );
    }
  }

  /**
   * Queues `t` (or null) for the next rank. Resolves once the pipe has room for it
   * (bytes in flight + its bytes ≤ bufferSizeBytes, or an empty pipe); the send itself
   * runs in order in the background. The promise may be ignored: a failure of this send
   * breaks the pipe and reaches the next call. The tensor must not change, nor be
   * disposed, until it has been sent: once a later recvTensor on this pipe has returned
   * a non-empty tensor (the caller's stream then runs after the send), or after close().
   */
  sendTensor(t: Tensor | null): Promise<void> {
    if (t !== null && !(t instanceof Tensor))
      return Promise.reject(new InvalidArgumentError('t', `expected a Tensor or null, got ${typeof t}`));
    const refused = this.refusal();
    if (refused) return refused;
    const bytes = t?.nbytes ?? 0;
    const admitted = this.admit(bytes);
    admitted.catch(() => undefined); // reported through the pipe's failure
    // The send runs on the pipe's send stream, after the caller's stream has written `t`.
    const written = t?.isCuda && t.numel > 0 ? this.event().record(currentStream()) : null;
    const job = this.sendChain.then(async () => {
      await admitted;
      let complete: () => Promise<void>;
      try {
        if (this.failure) throw this.failure;
        await this.ready;
        ({ complete } = await this.send(t, written));
      } catch (err) {
        this.release(bytes);
        throw err;
      }
      // The chain moves on once the send is enqueued; its completion frees its bytes.
      // Sends complete in stream order: one wait at a time, the oldest first.
      this.completions = this.completions.then(complete).then(
        () => this.release(bytes),
        (err: unknown) => {
          this.release(bytes);
          this.fail(this.broke(err, `send to rank ${this.next} failed`));
        },
      );
    });
    this.sendChain = job.catch((err: unknown) => {
      this.fail(this.broke(err, `send to rank ${this.next} failed`));
    });
    return this.guard(admitted, `send to rank ${this.next} failed`);
  }

  /**
   * The next tensor (or null) from the previous rank, in the order it was sent. On a
   * device it is valid in the order of the stream current at this call, which also runs
   * after every send this rank issued before the call (so their tensors may be freed
   * there). The receive of the item after it is posted at once.
   */
  recvTensor(): Promise<Tensor | null> {
    const refused = this.refusal();
    if (refused) return refused;
    const user = this.recvStream ? currentStream() : null;
    const sendsBefore = this.sendChain;
    const job = this.recvChain.then(async () => {
      if (this.failure) throw this.failure;
      await this.ready;
      const item = this.posted ?? this.post();
      // Keep the next receive posted: issued once this one is, whatever the caller does.
      const next = item.then(() => this.post());
      next.catch(() => undefined); // reported to the call that takes it
      this.posted = next;
      const { tensor, arrived } = await this.withDeadline(item);
      if (user && arrived) {
        user.waitEvent(arrived);
        this.spareEvents.push(arrived);
        // The caller's stream runs after the sends issued before this call.
        await sendsBefore;
        if (this.sendStream) user.waitStream(this.sendStream);
      }
      return tensor;
    });
    const what = `receive from rank ${this.prev} failed`;
    this.recvChain = job.then(
      () => undefined,
      (err: unknown) => {
        this.fail(this.broke(err, what));
      },
    );
    return this.guard(job, what);
  }

  /** A rejection with the failure (handled: the caller may ignore it), or null while the pipe is open. */
  private refusal(): Promise<never> | null {
    if (!this.failure && !this.closing) return null;
    const p = Promise.reject(this.failure ?? new BrokenPipeError(`KV pipe (rank ${this.kvRank}) is closed`));
    p.catch(() => undefined);
    return p;
  }

  /**
   * `work`, or the pipe's failure as soon as it breaks (a pending call does not wait
   * for its own deadline once the peer is known gone). Marked handled.
   */
  private guard<T>(work: Promise<T>, what: string): Promise<T> {
    const p = new Promise<T>((resolve, reject) => {
      this.pendingCalls.add(reject);
      work.then(
        (value) => {
          this.pendingCalls.delete(reject);
          resolve(value);
        },
        (err: unknown) => {
          this.pendingCalls.delete(reject);
          reject(err);
        },
      );
    }).catch((err: unknown) => {
      throw this.fail(this.broke(err, what));
    });
    p.catch(() => undefined);
    return p;
  }

  private broke(err: unknown, what: string): BrokenPipeError {
    return err instanceof BrokenPipeError
      ? err
      : new BrokenPipeError(`KV pipe (rank ${this.kvRank}): ${what}: ${describe(err)}`, { cause: err });
  }

  /**
   * Issues one item: the metadata write, then for a non-empty tensor the send on the
   * pipe's stream. Resolves once issued, with a function that waits for the data's
   * delivery and releases what the send held (called in send order).
   *
   * The metadata write is not awaited (it is written to the group's direct connection at
   * once and in order; a failed write breaks the pipe), except the first: NCCL opens
   * a peer connection inside a send and blocks the thread until the peer, which needs
   * the metadata to post its receive, joins. connect() opened them already; awaiting
   * the first write keeps even a lazily reopened connection from deadlocking.
   */
  private async send(t: Tensor | null, writtenOn: CudaEvent | null): Promise<{ complete: () => Promise<void> }> {
    if (this.failure) throw this.failure;
    const meta: Metadata = t === null ? null : { dtype: t.dtype, shape: [...t.shape] };
    const written = this.group!.sendObj(meta, this.next);
    if (this.sentItems++ === 0) await written;
    else written.catch((err: unknown) => this.fail(this.broke(err, `metadata to rank ${this.next} failed`)));
    if (t === null || t.numel === 0) return { complete: () => Promise.resolve() };
    if (writtenOn) {
      this.sendStream!.waitEvent(writtenOn);
      this.spareEvents.push(writtenOn);
    }
    const { local, sent, done } = enqueueOn(this.sendStream, () => {
      const c = t.device === this.device ? t.contiguous() : t.to(this.device);
      const p = this.sendComm!.send(c, this.next);
      // Device: an event after the send marks its completion; host: the send's own promise.
      const ev = this.sendStream ? this.event().record(this.sendStream) : null;
      return { local: c, sent: p, done: ev };
    });
    await sent;
    const complete = async (): Promise<void> => {
      let reached = false;
      try {
        // A broken pipe aborted its communicator: nothing more will complete.
        if (done && !this.failure) await done.wait(this.timeoutMs, { spin: false });
        reached = true;
      } finally {
        if (done && reached && !this.failure) this.spareEvents.push(done);
        else done?.dispose();
        // Freed in the pipe stream's order, after the send that read it.
        if (local !== t) enqueueOn(this.sendStream, () => local.dispose());
      }
    };
    return { complete };
  }

  /** A spare event, or a new one. */
  private event(): CudaEvent {
    return this.spareEvents.pop() ?? new CudaEvent();
  }

  /**
   * Issues the receive of the next item once its metadata is in (no deadline: an idle
   * pipe is not an error; recvTensor's wait has one). On a device the data is received
   * into a new tensor on the pipe's receive stream, with an event recorded after it.
   */
  private async post(): Promise<Posted> {
    const meta = await this.nextMetadata();
    if (meta === null) return { tensor: null, arrived: null };
    const numel = meta.shape.reduce((a, b) => a * b, 1);
    if (numel === 0)
      return { tensor: Tensor.empty(meta.shape, { dtype: meta.dtype, device: this.device }), arrived: null };
    if (this.failure) throw this.failure;
    const { received, arrived } = enqueueOn(this.recvStream, () => ({
      received: this.recvComm!.recv(meta.shape, meta.dtype, this.prev),
      arrived: this.recvStream ? this.event().record(this.recvStream) : null,
    }));
    return { tensor: await received, arrived };
  }

  /** `work` within the pipe's deadline; a late item is a StoreTimeoutError (its metadata never came). */
  private async withDeadline<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreTimeoutError(`kv-pipe metadata from rank ${this.prev}`, this.timeoutMs, 'recv')),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The next item's metadata. Reads run METADATA_AHEAD items ahead, so a stream of
   * tensors pays no store round trip per tensor; they have no deadline themselves.
   */
  private nextMetadata(): Promise<Metadata> {
    while (this.metadataAhead.length < METADATA_AHEAD) {
      const read = this.group!.recvObj(this.prev, NO_DEADLINE_MS) as Promise<Metadata>;
      read.catch(() => undefined); // reported to the caller that takes it
      this.metadataAhead.push(read);
    }
    return this.metadataAhead.shift()!;
  }

  /** Resolves once `bytes` fit; rejects at the deadline or when the pipe breaks. */
  private admit(bytes: number): Promise<void> {
    if (this.waiters.length === 0 && (this.inFlight === 0 || this.inFlight + bytes <= this.bufferSizeBytes)) {
      this.inFlight += bytes;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        bytes,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          reject(
            this.fail(
              new BrokenPipeError(
                `KV pipe (rank ${this.kvRank}): no room for ${bytes} bytes within ${this.timeoutMs} ms ` +
                  `(${this.inFlight} of ${this.bufferSizeBytes} bytes in flight; is rank ${this.next} receiving?)`,
              ),
            ),
          );
        }, this.timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Frees `bytes` and admits waiting sends in order while they fit. */
  private release(bytes: number): void {
    this.inFlight -= bytes;
    while (this.waiters.length > 0) {
      const w = this.waiters[0];
      if (this.inFlight !== 0 && this.inFlight + w.bytes > this.bufferSizeBytes) break;
      this.waiters.shift();
      clearTimeout(w.timer);
      this.inFlight += w.bytes;
      w.resolve();
    }
  }

  /**
   * Breaks the pipe (first cause wins): waiting sends reject, pending calls and later
   * ones too, and the communicator is aborted so no operation waits on the peer.
   */
  private fail(err: BrokenPipeError): BrokenPipeError {
    if (this.failure) return this.failure;
    this.failure = err;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    for (const reject of this.pendingCalls) reject(err);
    this.pendingCalls.clear();
    this.aborter.abort(err);
    return err;
  }

  /**
   * Refuses later calls at once, lets the sends and receives already queued finish (up
   * to the deadline), then breaks the pipe and releases the group, communicator and
   * stream. Collective on a healthy pipe (every rank calls it: kvRank 0 keeps serving
   * the store until the peers are done with it); idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise((resolve) => (timer = setTimeout(resolve, this.timeoutMs)));
      await Promise.race([this.sendChain.then(() => this.completions).then(() => this.ready), deadline]).catch(
        () => undefined,
      );
      clearTimeout(timer);
      const healthy = !this.failure && this.group !== null;
      this.opts.abortSignal?.removeEventListener('abort', this.onAbort);
      this.fail(new BrokenPipeError(`KV pipe (rank ${this.kvRank}) is closed`));
      // kvRank 0 serves the store and leaves the barrier last, so the peers' last reads
      // are not cut off. A broken pipe just goes.
      if (healthy) await this.group!.barrier().catch(() => undefined);
      this.watch?.close();
      await this.ready.catch(() => undefined);
      // A receive posted ahead that no recvTensor took: its tensor goes with the pipe.
      this.posted?.then(
        (p) => p.tensor?.dispose(),
        () => undefined,
      );
      for (const comm of this.comms) await comm.destroy();
      for (const ev of this.spareEvents.splice(0)) ev.dispose();
      this.sendStream?.dispose();
      this.recvStream?.dispose();
      await this.group?.close();
    })();
    return this.closing;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * The communicator (by colour) of the link from kvRank `from` to the next rank: links
 * alternate between two, and a ring of odd size gives its closing link a third, so that
 * no rank sends and receives on the same communicator.
 */
export function linkComm(from: number, size: number): number {
  return size % 2 === 1 && from === size - 1 ? 2 : from % 2;
}
