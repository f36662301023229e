/**
 * A ring of a communicator's last operations, put into timeout and failure errors so
 * that a hang names what every rank was doing (the role of torch's NCCL flight recorder).
 * Recording is a few field writes into preallocated slots: it stays on the hot path.
 * It reads no clock unless the caller gives the time: a clock read (~50 ns, more on some
 * hosts) is a tenth of a collective's own host cost. A record without one gets its start
 * from the first {@link FlightRecorder.overdue} that finds it unfinished: for NCCL, the
 * watchdog's first poll after it was issued (≤ 50 ms later while the event loop is free;
 * a timeout can come late by as long as the loop is blocked, never early), and its
 * deadline counts from there. One that finished before anybody asked keeps a NaN start.
 */
import type { FlightRecord } from '../errors.ts';
import { callDeadline } from './call-deadline.ts';

/** An operation past its deadline: its record and how long it was given. */
export interface Overdue {
  record: FlightRecord;
  timeoutMs: number;
}

export class FlightRecorder {
  private readonly slots: FlightRecord[];
  /** Per slot: the deadline of the call that issued the operation (Infinity outside a call). */
  private readonly callDeadlines: Float64Array;
  private next = 0;
  private seq = 0;

  constructor(readonly capacity = 16) {
    this.slots = Array.from({ length: capacity }, () => ({
      op: '',
      seq: -1,
      dtype: '',
      count: 0,
      peer: null,
      startMs: 0,
      endMs: null,
    }));
    this.callDeadlines = new Float64Array(capacity);
  }

  /** Sequence number the next {@link start} will get. */
  get nextSeq(): number {
    return this.seq;
  }

  /**
   * Records the start of an operation and returns its sequence number. `startMs` (a
   * performance.now() time) defaults to NaN, "not known yet": see {@link overdue}.
   */
  start(op: string, dtype: string, count: number, peer: number | null = null, startMs = Number.NaN): number {
    const slot = this.slots[this.next];
    this.callDeadlines[this.next] = callDeadline();
    this.next = (this.next + 1) % this.capacity;
    slot.op = op;
    slot.seq = this.seq;
    slot.dtype = dtype;
    slot.count = count;
    slot.peer = peer;
    slot.startMs = startMs;
    slot.endMs = null;
    return this.seq++;
  }

  /** Marks every recorded operation up to and including `seq` as finished. */
  finishThrough(seq: number): void {
    const now = performance.now();
    for (const slot of this.slots) if (slot.seq >= 0 && slot.seq <= seq && slot.endMs === null) slot.endMs = now;
  }

  /**
   * The unfinished operation whose deadline (its start + `timeoutMs`, or the deadline
   * of the call that issued it if earlier) passed first, by `now`; null when none did.
   * An unfinished record without a start gets `now` as its start here.
   */
  overdue(timeoutMs: number, now = performance.now()): Overdue | null {
    let worst: Overdue | null = null;
    let worstDeadline = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.capacity; i++) {
      const slot = this.slots[i];
      if (slot.seq < 0 || slot.endMs !== null) continue;
      if (Number.isNaN(slot.startMs)) slot.startMs = now;
      const deadline = Math.min(slot.startMs + timeoutMs, this.callDeadlines[i]);
      if (deadline <= now && deadline < worstDeadline) {
        worstDeadline = deadline;
        worst = { record: { ...slot }, timeoutMs: Math.max(0, Math.round(deadline - slot.startMs)) };
      }
    }
    return worst;
  }

  /** Copies of the recorded operations, oldest first. */
  recent(): FlightRecord[] {
    return this.slots
      .filter((s) => s.seq >= 0)
      .sort((a, b) => a.seq - b.seq)
      .map((s) => ({ ...s }));
  }
}
