/**
 * The store server's state: the key-value map, the per-key read budgets of
 * `setForReaders` values, and the parked gets and waits. Pure bookkeeping; replies go
 * out through the {@link Waiter}'s connection.
 */

/** How a parked request is answered when its keys appear. */
export interface WaiterSink {
  /** Answers request `id` with a value. */
  replyValue(id: number, value: Buffer): void;
  /** Answers request `id` with no fields. */
  replyEmpty(id: number): void;
  /** The request was answered; the sink stops tracking it. */
  answered(w: Waiter): void;
}

/** A parked get (`keys` null) or wait (`keys` its missing keys, `missing` how many are still unset). */
export interface Waiter {
  sink: WaiterSink;
  id: number;
  key: string;
  keys: string[] | null;
  missing: number;
}

/** The map and its waiters. */
export class KeyValueState {
  readonly data = new Map<string, Buffer>();
  /** Keys set with `setForReaders`: gets left before the key is deleted. */
  private readonly readsLeft = new Map<string, number>();
  private readonly parked = new Map<string, Set<Waiter>>();

  /** Stores `value` (owned by the state from now on) and answers the requests parked on `key`. */
  set(key: string, value: Buffer, readers: number): void {
    this.data.set(key, value);
    if (readers > 0) this.readsLeft.set(key, readers);
    else this.readsLeft.delete(key);
    const waiters = this.parked.get(key);
    if (!waiters) return;
    this.parked.delete(key);
    for (const w of waiters) {
      if (w.keys === null) {
        // A parked get: answer it unless earlier readers already used up the value.
        if (!this.data.has(key)) {
          this.park(key, w);
          continue;
        }
        w.sink.answered(w);
        w.sink.replyValue(w.id, value);
        this.countRead(key);
      } else if (--w.missing === 0) {
        w.sink.answered(w);
        this.unpark(w);
        w.sink.replyEmpty(w.id);
      }
    }
  }

  /** One get served: a `setForReaders` key is deleted after its last reader. */
  countRead(key: string): void {
    const left = this.readsLeft.get(key);
    if (left === undefined) return;
    if (left > 1) this.readsLeft.set(key, left - 1);
    else {
      this.readsLeft.delete(key);
      this.data.delete(key);
    }
  }

  /** Deletes `key`; true if it existed. */
  delete(key: string): boolean {
    this.readsLeft.delete(key);
    return this.data.delete(key);
  }

  /** Parks `w` until `key` is set. */
  park(key: string, w: Waiter): void {
    let set = this.parked.get(key);
    if (!set) {
      set = new Set();
      this.parked.set(key, set);
    }
    set.add(w);
  }

  /** Removes `w` from every key it waits on (cancelled, answered, or its client left). */
  unpark(w: Waiter): void {
    for (const key of w.keys ?? [w.key]) {
      const set = this.parked.get(key);
      if (set?.delete(w) && set.size === 0) this.parked.delete(key);
    }
  }

  /** Forgets everything (the server closed). */
  clear(): void {
    this.data.clear();
    this.readsLeft.clear();
    this.parked.clear();
  }
}
