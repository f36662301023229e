/**
 * The synchronisation protocol of the CPU communicator, over {@link Segments}.
 *
 * Collectives run in numbered rounds, the same numbers on every rank (each op splits
 * into the same number of rounds everywhere). Round r uses half r % 2 of each rank's
 * segment. A rank that contributes data in round r waits until every peer finished
 * round r - 2 (their `done` ≥ r - 1: nobody still reads that half), copies its data
 * in, stores the op's signature and sets its `posted` to r + 1. Readers wait for the
 * writers' `posted` ≥ r + 1, check the signature (a mismatched collective is an error,
 * not silent corruption), read or reduce straight from the writers' halves, then set
 * their own `done` to r + 1. Two halves let a writer run one round ahead of its readers.
 * Counters are absolute and only their owner writes them, so a rank that has nothing to
 * send in a round simply does not post.
 *
 * Point-to-point uses a separate channel per ordered pair (two slots in the sender's
 * segment, a sent counter there and a consumed counter in the receiver's), so sends to
 * one peer, receives from another and collectives never wait on each other.
 *
 * Waits check the counter, spin briefly, poll on setImmediate turns, then sleep on the
 * word (Atomics.waitAsync or futex) in slices; every wait has the op's deadline.
 */
import { CollectiveTimeoutError, GroupClosedError, InvalidArgumentError, RankFailedError } from '../errors.ts';
import type { FlightRecorder } from './flight-recorder.ts';
import { W, type Region, type Segments } from './cpu-segments.ts';
import { describeCall, readCall, writeCall, type OpCall } from './op-call.ts';

/** What a wait needs to know about the operation it belongs to. */
export interface OpState {
  op: string;
  seq: number;
  /** performance.now() time at which the operation fails with CollectiveTimeoutError. */
  deadline: number;
  /** How long the operation was given (its timeout, or less when its call's deadline came first). */
  timeoutMs: number;
  /** What the user called, for errors that compare this rank with a peer. */
  call: OpCall;
}

/** How long a waiter spins synchronously, then polls on setImmediate, before it sleeps. */
export interface WaitPolicy {
  spinMs: number;
  pollMs: number;
}

const SLEEP_SLICE_MS = 200;

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** `value` has reached `target` (wrap-safe for int32 counters). */
function reached(value: number, target: number): boolean {
  return ((value - target) | 0) >= 0;
}

const sentWord = (peer: number): number => W.p2pBase + 4 * peer;
const consumedWord = (peer: number): number => W.p2pBase + 4 * peer + 2;

/** One rank's end of the protocol. */
export class CpuChannel {
  readonly rank: number;
  readonly worldSize: number;
  readonly mine: Region;
  /** The next collective round of this rank. */
  private round = 0;
  private readonly sent: number[];
  private readonly consumed: number[];
  private failure: Error | null = null;

  constructor(
    readonly segments: Segments,
    rank: number,
    private readonly groupName: string,
    private readonly timeoutMs: number,
    private readonly recorder: FlightRecorder,
    private readonly policy: WaitPolicy,
  ) {
    this.rank = rank;
    this.worldSize = segments.regions.length;
    this.mine = segments.regions[rank];
    this.sent = new Array<number>(this.worldSize).fill(0);
    this.consumed = new Array<number>(this.worldSize).fill(0);
  }

  /** The error every pending and later operation rejects with, once set. */
  get failed(): Error | null {
    return this.failure;
  }

  /** Marks the channel failed (first error wins) and wakes every sleeper so waits notice. */
  fail(err: Error): Error {
    if (!this.failure) {
      this.failure = err;
      this.segments.wakeAll();
    }
    return this.failure;
  }

  /** Fails with the abort signal's reason: a RankFailedError as is, anything else as GroupClosedError. */
  abort(reason: unknown): void {
    this.fail(
      reason instanceof RankFailedError
        ? reason
        : new GroupClosedError(
            `group '${this.groupName}' was aborted: ${reason instanceof Error ? reason.message : String(reason)}`,
          ),
    );
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Byte offset of the half the current round uses. */
  get halfAt(): number {
    return this.segments.layout.halfAt(this.round & 1);
  }

  /** Byte offset of the half the next round uses. */
  get nextHalfAt(): number {
    return this.segments.layout.halfAt((this.round + 1) & 1);
  }

  /** Before writing this round's half: every peer has finished the round that last used it. */
  async beginWrite(s: OpState): Promise<void> {
    const need = this.round - 1;
    if (need <= 0) return;
    for (let p = 0; p < this.worldSize; p++) {
      if (p !== this.rank) await this.wait(p, W.done, need, s);
    }
  }

  /** Publishes this round's half, tagged with the op's signature and the user's call. */
  post(sig: number, s: OpState): void {
    writeCall(this.mine.words, this.segments.layout.callWord(this.round & 1), s.call);
    Atomics.store(this.mine.words, W.sig + (this.round & 1), sig);
    this.mine.publish(W.posted, this.round + 1);
  }

  /** Waits for `peer`'s data of this round and checks it belongs to the same collective. */
  async awaitPosted(peer: number, sig: number, s: OpState): Promise<void> {
    await this.wait(peer, W.posted, this.round + 1, s);
    const words = this.segments.regions[peer].words;
    if (Atomics.load(words, W.sig + (this.round & 1)) !== sig) {
      const theirs = readCall(words, this.segments.layout.callWord(this.round & 1));
      throw this.fail(
        new InvalidArgumentError(
          'collective',
          `${s.call.op} on rank ${this.rank} of group '${this.groupName}' does not match rank ${peer}: ` +
            `this rank called ${describeCall(s.call)}, rank ${peer} called ${describeCall(theirs)} ` +
            `(${describeCall(s.call) === describeCall(theirs) ? 'their sizes differ' : 'op, dtype, shape, root or reduction differ'}); ` +
            'every rank must call the same collectives in the same order, with matching shapes and dtypes',
        ),
      );
    }
  }

  /** This rank has read everything of this round; moves to the next. */
  finish(): void {
    this.mine.publish(W.done, this.round + 1);
    this.round++;
  }

  /** Sends one chunk (`len` bytes of `src` at `off`) to `peer`; `total` is the message size, announced on the first chunk. */
  async sendChunk(
    peer: number,
    src: Uint8Array,
    off: number,
    len: number,
    total: number,
    first: boolean,
    s: OpState,
  ): Promise<void> {
    const layout = this.segments.layout;
    const c = this.sent[peer];
    // The slot was last used by chunk c - 2: the receiver must have consumed it.
    if (c >= 2) await this.wait(peer, consumedWord(this.rank), c - 1, s);
    this.mine.bytes.set(src.subarray(off, off + len), layout.p2pSlotAt(peer, c & 1));
    if (first) {
      writeCall(this.mine.words, layout.p2pCallWord(peer, c & 1), s.call);
      Atomics.store(this.mine.words, layout.p2pBytesWord(peer, c & 1), total);
    }
    this.sent[peer] = c + 1;
    this.mine.publish(sentWord(peer), c + 1);
  }

  /** Receives the next chunk from `peer` into `dst` at `off`; checks the announced size on the first chunk. */
  async recvChunk(
    peer: number,
    dst: Uint8Array,
    off: number,
    len: number,
    total: number,
    first: boolean,
    s: OpState,
  ): Promise<void> {
    const layout = this.segments.layout;
    const region = this.segments.regions[peer];
    const c = this.consumed[peer];
    await this.wait(peer, sentWord(this.rank), c + 1, s);
    if (first) {
      const announced = Atomics.load(region.words, layout.p2pBytesWord(this.rank, c & 1));
      if (announced !== total) {
        const theirs = readCall(region.words, layout.p2pCallWord(this.rank, c & 1));
        throw this.fail(
          new InvalidArgumentError(
            'recv',
            `recv on rank ${this.rank} of group '${this.groupName}' expects ${describeCall(s.call)} from rank ${peer}, ` +
              `but rank ${peer} called ${describeCall(theirs)} (${announced} bytes, not ${total}): shapes or dtypes differ`,
          ),
        );
      }
    }
    const at = layout.p2pSlotAt(this.rank, c & 1);
    dst.set(region.bytes.subarray(at, at + len), off);
    this.consumed[peer] = c + 1;
    this.mine.publish(consumedWord(peer), c + 1);
  }

  /** Resolves once `peer`'s counter `index` reaches `target`; rejects at the deadline or on failure. */
  wait(peer: number, index: number, target: number, s: OpState): Promise<void> | void {
    if (this.failure) throw this.failure;
    if (reached(Atomics.load(this.segments.regions[peer].words, index), target)) return;
    return this.waitSlow(peer, index, target, s);
  }

  private async waitSlow(peer: number, index: number, target: number, s: OpState): Promise<void> {
    const words = this.segments.regions[peer].words;
    const t0 = performance.now();
    if (this.policy.spinMs > 0) {
      do {
        if (reached(Atomics.load(words, index), target)) return;
      } while (performance.now() - t0 < this.policy.spinMs);
    }
    for (;;) {
      if (this.failure) throw this.failure;
      const value = Atomics.load(words, index);
      if (reached(value, target)) return;
      const now = performance.now();
      if (now >= s.deadline) {
        throw this.fail(new CollectiveTimeoutError(this.groupName, s.op, s.seq, s.timeoutMs, this.recorder.recent()));
      }
      if (now - t0 < this.policy.pollMs) {
        await immediate();
        continue;
      }
      // Announce the sleep, then re-check: the writer either sees us or we see its value.
      Atomics.add(words, index + 1, 1);
      try {
        if (Atomics.load(words, index) === value && !this.failure) {
          await this.segments.sleep(peer, index, value, Math.min(SLEEP_SLICE_MS, s.deadline - now));
        }
      } finally {
        Atomics.sub(words, index + 1, 1);
      }
    }
  }
}
