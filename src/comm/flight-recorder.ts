/**
 * A ring of a communicator's last operations, put into timeout and failure errors so
 * that a hang names what every rank was doing (the role of torch's NCCL flight recorder).
 * Recording is a few field writes into preallocated slots: it stays on the hot path.
 */
import type { FlightRecord } from '../errors.ts';

export class FlightRecorder {
  private readonly slots: FlightRecord[];
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
  }

  /** Sequence number the next {@link start} will get. */
  get nextSeq(): number {
    return this.seq;
  }

  /** Records the start of an operation and returns its sequence number. */
  start(op: string, dtype: string, count: number, peer: number | null = null): number {
    const slot = this.slots[this.next];
    this.next = (this.next + 1) % this.capacity;
    slot.op = op;
    slot.seq = this.seq;
    slot.dtype = dtype;
    slot.count = count;
    slot.peer = peer;
    slot.startMs = performance.now();
    slot.endMs = null;
    return this.seq++;
  }

  /** Marks every recorded operation up to and including `seq` as finished. */
  finishThrough(seq: number): void {
    const now = performance.now();
    for (const slot of this.slots) if (slot.seq >= 0 && slot.seq <= seq && slot.endMs === null) slot.endMs = now;
  }

  /** Start time of the oldest unfinished operation, or null when all are done. */
  oldestPendingStartMs(): number | null {
    let oldest: number | null = null;
    for (const slot of this.slots) {
      if (slot.seq >= 0 && slot.endMs === null && (oldest === null || slot.startMs < oldest)) oldest = slot.startMs;
    }
    return oldest;
  }

  /** Copies of the recorded operations, oldest first. */
  recent(): FlightRecord[] {
    return this.slots
      .filter((s) => s.seq >= 0)
      .sort((a, b) => a.seq - b.seq)
      .map((s) => ({ ...s }));
  }
}
