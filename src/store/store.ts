/**
 * The `Store` interface every layer above takes (a client connection or a prefixed
 * view of one), and {@link PrefixStore}. Values are bytes; every call has a deadline.
 */

/**
 * A key-value store with blocking gets (the role torch's `Store` plays). Every method
 * takes an optional `timeoutMs`; without it the store's default deadline applies. A
 * deadline that passes rejects with `StoreTimeoutError` naming the key; a broken or
 * closed connection rejects with `StoreError`.
 */
export interface Store {
  /** Sets `key` (a string value is stored as UTF-8) and wakes every get waiting for it. */
  set(key: string, value: Uint8Array | string, timeoutMs?: number): Promise<void>;
  /**
   * Sets `key` like {@link Store.set}, and the server deletes it after `readers` gets
   * (parked gets answered by this set count). Lets a one-shot message clean up after
   * itself without an extra round trip per reader.
   */
  setForReaders(key: string, value: Uint8Array | string, readers: number, timeoutMs?: number): Promise<void>;
  /** The value of `key`, waiting until it exists, up to the deadline. */
  get(key: string, timeoutMs?: number): Promise<Uint8Array>;
  /** Resolves once every key exists, up to the deadline (values are not transferred). */
  wait(keys: string[], timeoutMs?: number): Promise<void>;
  /** Atomically adds `delta` to an integer value (missing counts as 0); returns the sum. */
  add(key: string, delta: number, timeoutMs?: number): Promise<number>;
  /**
   * torch's compare-and-set: sets `desired` when the value equals `expected`, or when
   * the key is missing and `expected` is empty. Returns the value held afterwards (for a
   * missing key with a non-empty `expected`, torch returns `expected`; so do we).
   */
  compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
    timeoutMs?: number,
  ): Promise<Uint8Array>;
  /** Deletes `key`; true if it existed. */
  delete(key: string, timeoutMs?: number): Promise<boolean>;
  /** True if every key exists now (does not wait). */
  check(keys: string[], timeoutMs?: number): Promise<boolean>;
  /** Number of keys in the whole store (a prefixed view counts all of them, like torch). */
  numKeys(timeoutMs?: number): Promise<number>;
  /** A view of this store whose keys are prefixed with `prefix/`. */
  withPrefix(prefix: string): Store;
}

/** A view of `inner` whose keys live under `prefix/` (torch's PrefixStore). */
export class PrefixStore implements Store {
  /** The prefix, without the trailing `/`. */
  readonly prefix: string;
  private readonly lead: string;

  constructor(
    private readonly inner: Store,
    prefix: string,
  ) {
    this.prefix = prefix;
    this.lead = `${prefix}/`;
  }

  set(key: string, value: Uint8Array | string, timeoutMs?: number): Promise<void> {
    return this.inner.set(this.lead + key, value, timeoutMs);
  }
  setForReaders(key: string, value: Uint8Array | string, readers: number, timeoutMs?: number): Promise<void> {
    return this.inner.setForReaders(this.lead + key, value, readers, timeoutMs);
  }
  get(key: string, timeoutMs?: number): Promise<Uint8Array> {
    return this.inner.get(this.lead + key, timeoutMs);
  }
  wait(keys: string[], timeoutMs?: number): Promise<void> {
    return this.inner.wait(
      keys.map((k) => this.lead + k),
      timeoutMs,
    );
  }
  add(key: string, delta: number, timeoutMs?: number): Promise<number> {
    return this.inner.add(this.lead + key, delta, timeoutMs);
  }
  compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
    timeoutMs?: number,
  ): Promise<Uint8Array> {
    return this.inner.compareSet(this.lead + key, expected, desired, timeoutMs);
  }
  delete(key: string, timeoutMs?: number): Promise<boolean> {
    return this.inner.delete(this.lead + key, timeoutMs);
  }
  check(keys: string[], timeoutMs?: number): Promise<boolean> {
    return this.inner.check(
      keys.map((k) => this.lead + k),
      timeoutMs,
    );
  }
  numKeys(timeoutMs?: number): Promise<number> {
    return this.inner.numKeys(timeoutMs);
  }
  withPrefix(prefix: string): Store {
    return new PrefixStore(this, prefix);
  }
}
