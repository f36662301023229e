/**
 * Int32 words in memory that several threads or processes map, with blocking waits:
 * Atomics.waitAsync / Atomics.notify on a SharedArrayBuffer, futex on a /dev/shm
 * mapping (`address` set; Atomics.wait is refused on koffi's external buffers).
 * The CPU communicator's segments and the MessageQueue ring both sleep through this.
 */
import { futexWait, futexWake } from './shm.ts';

// Node 20 has Atomics.waitAsync; the ES2023 lib the project compiles against does not declare it.
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      view: Int32Array,
      index: number,
      value: number,
      timeoutMs: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

function noop(): void {}

/** A run of int32 words at the start of a shared buffer. */
export class SharedWords {
  readonly words: Int32Array;

  /** `address`: where the buffer is mapped in this process (shm), or null for a SharedArrayBuffer. */
  constructor(
    buffer: ArrayBufferLike,
    private readonly address: bigint | null,
    count: number,
  ) {
    this.words = new Int32Array(buffer, 0, count);
  }

  /** Stores `value` into counter `index` and wakes whoever sleeps on it (its sleepers word is `index + 1`). */
  publish(index: number, value: number): void {
    Atomics.store(this.words, index, value);
    if (Atomics.load(this.words, index + 1) > 0) this.wake(index);
  }

  /** Wakes every sleeper of word `index` (they re-check and sleep again if need be). */
  wake(index: number): void {
    if (this.address === null) Atomics.notify(this.words, index);
    else futexWake(this.address + BigInt(index * 4));
  }

  /** Sleeps until word `index` is woken or differs from `expected`, at most `ms`. */
  sleep(index: number, expected: number, ms: number): Promise<void> {
    if (this.address !== null) return futexWait(this.address + BigInt(index * 4), expected, ms);
    const r = waitAsync(this.words, index, expected, ms);
    if (!r.async) return Promise.resolve();
    // A pending waitAsync does not keep Node 20's event loop alive.
    const keepAlive = setTimeout(noop, ms + 1000);
    return r.value.then(() => clearTimeout(keepAlive));
  }
}
