/**
 * Mailboxes over shared memory: each rank owns one segment with one data slot and a
 * header of counters, and maps every peer's segment. A writer publishes a message to
 * a set of readers (`avail[w]++` in its header); reader w waits for `avail[w]` to pass
 * what it has consumed, reads the writer's slot, then writes `done[w]` back into the
 * writer's header. The slot is free again when `done[w] == avail[w]` for every w.
 * Messages between one writer and one reader are consumed in order.
 */
import { pollUntil } from '../tensor/index.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { ShmSegment } from './shm.ts';

const HEADER_BYTES = 4096;

/** The mailboxes of one communicator, as seen by one rank. */
export class Mailboxes {
  readonly slotBytes: number;
  private readonly headers: Int32Array[];
  private readonly slots: Uint8Array[];
  private readonly consumed: number[];
  private readonly segments: ShmSegment[];

  private constructor(readonly rank: number, readonly worldSize: number, segments: ShmSegment[], slotBytes: number) {
    this.segments = segments;
    this.slotBytes = slotBytes;
    this.headers = segments.map((s) => new Int32Array(s.buffer, 0, 2 * worldSize));
    this.slots = segments.map((s) => new Uint8Array(s.buffer, HEADER_BYTES, slotBytes));
    this.consumed = new Array<number>(worldSize).fill(0);
  }

  /** Collective: every rank creates its segment, learns the others' and maps them. */
  static async create(group: StatelessProcessGroup, slotBytes: number): Promise<Mailboxes> {
    const mine = ShmSegment.create(HEADER_BYTES + slotBytes);
    try {
      const paths = await group.allGatherObj(mine.path);
      const segments = paths.map((p, r) => (r === group.rank ? mine : ShmSegment.open(p, HEADER_BYTES + slotBytes)));
      // Everyone has mapped everything: the names can go, so nothing outlives a crash.
      await group.barrier();
      mine.unlink();
      return new Mailboxes(group.rank, group.worldSize, segments, slotBytes);
    } catch (err) {
      mine.unlink();
      mine.unmap();
      throw err;
    }
  }

  /** A byte view of `writer`'s slot. */
  slot(writer: number): Uint8Array {
    return this.slots[writer];
  }

  /** The slot's underlying buffer and byte offset, for typed views. */
  slotBuffer(writer: number): { buffer: ArrayBuffer; byteOffset: number } {
    return { buffer: this.segments[writer].buffer, byteOffset: HEADER_BYTES };
  }

  /** Waits until every reader consumed this rank's previous message (the slot is free). */
  slotFree(wait: (done: () => boolean) => Promise<void>): Promise<void> {
    const h = this.headers[this.rank];
    const n = this.worldSize;
    return wait(() => {
      for (let w = 0; w < n; w++) if (Atomics.load(h, n + w) !== Atomics.load(h, w)) return false;
      return true;
    });
  }

  /** Publishes the slot's contents to `readers` (fill the slot first). */
  publish(readers: readonly number[]): void {
    const h = this.headers[this.rank];
    for (const w of readers) Atomics.add(h, w, 1);
  }

  /** Waits for the next message from `writer`. */
  arrived(writer: number, wait: (done: () => boolean) => Promise<void>): Promise<void> {
    const h = this.headers[writer];
    const next = this.consumed[writer] + 1;
    const me = this.rank;
    return wait(() => Atomics.load(h, me) >= next);
  }

  /** Tells `writer` this rank has read its message. */
  release(writer: number): void {
    this.consumed[writer]++;
    Atomics.store(this.headers[writer], this.worldSize + this.rank, this.consumed[writer]);
  }

  /** Unmaps every segment; idempotent. */
  close(): void {
    for (const s of this.segments) {
      s.unlink();
      s.unmap();
    }
  }
}

/** The default waiter: pollUntil with a deadline and an abort check. */
export function waiter(timeoutMs: number, check: () => void, onTimeout: () => Error): (done: () => boolean) => Promise<void> {
  return (done) => pollUntil(() => {
    check();
    return done();
  }, timeoutMs, onTimeout);
}
