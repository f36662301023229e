/**
 * The writer-side expiry FIFO of StatelessProcessGroup (vLLM's `entries` deque):
 * keys in the order this process wrote them, with the time of the write.
 */
export class ExpiryQueue {
  private keys: string[] = [];
  private times: number[] = [];
  private head = 0;

  /** Number of keys recorded and not yet expired. */
  get length(): number {
    return this.keys.length - this.head;
  }

  /** Time of the oldest recorded write, or Infinity when none is left. */
  oldestMs(): number {
    return this.head < this.times.length ? this.times[this.head] : Number.POSITIVE_INFINITY;
  }

  /** Records a write of `key` at `atMs`. */
  push(key: string, atMs: number): void {
    this.keys.push(key);
    this.times.push(atMs);
  }

  /** Removes and returns every key written before `cutoffMs` (oldest first). */
  popOlderThan(cutoffMs: number): string[] {
    const from = this.head;
    while (this.head < this.keys.length && this.times[this.head] < cutoffMs) this.head++;
    const out = this.keys.slice(from, this.head);
    // Compact once the dead prefix dominates, so popping stays O(1) amortized.
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}
