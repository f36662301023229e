/**
 * A ring of a communicator's last operations, put into timeout and failure errors so
 * that a hang names what every rank was doing (the role of torch's NCCL flight recorder).
 * Recording is a few field writes into preallocated slots: it stays on the hot path.
 * It reads no clock unless the caller gives the time: a clock read (~50 ns, more on some
 * hosts) is a tenth of a collective's own host cost. A record without one is stamped by
 * {@link FlightRecorder.stamp}, which the NCCL watchdog calls on each of its polls: its
 * start is then when the watchdog first found it in flight, at most one poll (≤ 50 ms)
 * after it was issued, and its deadline counts from there.
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
   * performance.now() time) defaults to NaN, "not known yet": see {@link stamp}.
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

  /**
   * Gives `now` as the start of every unfinished record that has none: the watchdog
   * calls it when it polls, before it looks for overdue operations.
   */
  stamp(now: number): void {
    for (const slot of this.slots)
      if (slot.seq >= 0 && slot.endMs === null && Number.isNaN(slot.startMs)) slot.startMs = now;
  }

  /** Marks every recorded operation up to and including `seq` as finished. */
  finishThrough(seq: number): void {
    const now = performance.now();
    for (const slot of this.slots) if (slot.seq >= 0 && slot.seq <= seq && slot.endMs === null) slot.endMs = now;
  }

  /**
   * The unfinished operation whose deadline (its start + `timeoutMs`, or the deadline
   * of the call that issued it if earlier) passed first, by `now`; null when none did.
   * A record not stamped yet counts from `now`.
   */
  overdue(timeoutMs: number, now = performance.now()): Overdue | null {
    let worst: Overdue | null = null;
    let worstDeadline = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.capacity; i++) {
      const slot = this.slots[i];
      if (slot.seq < 0 || slot.endMs !== null) continue;
      const start = Number.isNaN(slot.startMs) ? now : slot.startMs;
      const deadline = Math.min(start + timeoutMs, this.callDeadlines[i]);
      if (deadline <= now && deadline < worstDeadline) {
        worstDeadline = deadline;
        worst = { record: { ...slot, startMs: start }, timeoutMs: Math.max(0, Math.round(deadline - start)) };
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
