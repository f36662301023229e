/**
 * The store barrier behind StatelessProcessGroup.barrier: arrive, decide once, depart.
 *
 * vLLM's newer barrier (arrival keys, then departure keys that rank 0 waits for)
 * polls the store. This one parks on the server instead, and decides each barrier's
 * outcome exactly once with a compare-and-set on `{base}/state`:
 *
 * 1. Arrive: `add({base}/arrive, 1)`. The rank that brings the count to `worldSize`
 *    sets the state to `pass`; every other rank waits for the state.
 * 2. A rank whose deadline passes sets the state to `timeout` instead. Because both
 *    writes are compare-and-set from empty, only the first wins, every rank that looks
 *    sees the same outcome, and a rank that arrives late fails at once rather than
 *    passing alone or leaking into the next barrier: the group is left in a clear state.
 * 3. Depart: `add({base}/depart, 1)`; the last rank out deletes the barrier's keys. When
 *    the store lives in one rank (`hostRank`), that rank also waits until every rank has
 *    departed, so closing the store right after a barrier cannot cut the others off.
 */
import { StoreTimeoutError } from '../errors.ts';
import type { Store } from './store.ts';

/** Options of {@link storeBarrier}. */
export interface StoreBarrierOptions {
  rank: number;
  worldSize: number;
  timeoutMs: number;
  /** The rank whose process serves the store, which must leave last; null when none does. */
  hostRank: number | null;
}

const PASS = 'pass';
const TIMEOUT = 'timeout';
/** Deadline of the short bookkeeping calls made after the barrier's own deadline. */
const GRACE_MS = 5_000;

/** Runs one barrier under the keys `{base}/…` of `store`. */
export async function storeBarrier(store: Store, base: string, opts: StoreBarrierOptions): Promise<void> {
  const { rank, worldSize, timeoutMs, hostRank } = opts;
  const deadline = performance.now() + timeoutMs;
  const left = () => Math.max(1, deadline - performance.now());
  const stateKey = `${base}/state`;

  const arrived = await store.add(`${base}/arrive`, 1, left());
  let outcome: string;
  if (arrived >= worldSize) {
    outcome = text(await store.compareSet(stateKey, '', PASS, left()));
  } else {
    try {
      outcome = text(await store.get(stateKey, left()));
    } catch (err) {
      if (!(err instanceof StoreTimeoutError)) throw err;
      // Declare the timeout, unless the last rank passed the barrier in the meantime.
      outcome = text(await store.compareSet(stateKey, '', TIMEOUT, GRACE_MS));
    }
  }
  if (outcome !== PASS) {
    const count = await store.add(`${base}/arrive`, 0, GRACE_MS).catch(() => NaN);
    const seen = Number.isNaN(count) ? 'not all' : `${count} of ${worldSize}`;
    throw new StoreTimeoutError(base, timeoutMs, `barrier (${seen} ranks arrived)`);
  }

  const departed = await store.add(`${base}/depart`, 1, GRACE_MS);
  const doneKey = `${base}/departed`;
  if (departed === worldSize) {
    const cleanup = [
      store.delete(`${base}/arrive`, GRACE_MS),
      store.delete(stateKey, GRACE_MS),
      store.delete(`${base}/depart`, GRACE_MS),
    ];
    // The connection is FIFO, so the host sees `departed` only after the deletes ran.
    if (hostRank !== null && hostRank !== rank)
      cleanup.push(store.setForReaders(doneKey, '1', 1, GRACE_MS).then(() => true));
    await Promise.all(cleanup);
  } else if (rank === hostRank) {
    await store.get(doneKey, Math.max(left(), GRACE_MS));
  }
}

function text(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
