/**
 * The deadline of the actor call an operation belongs to. A collective that only some
 * ranks enter must fail as a CollectiveTimeoutError (with the flight recorder), not
 * as the caller's bare call timeout: so an operation's deadline is its own timeout or
 * the deadline of the call that issued it, whichever comes first. The rank runtime
 * runs each call inside {@link withCallDeadline}.
 *
 * The calls in flight are kept in a plain list, not in an AsyncLocalStorage: on Node 20
 * an AsyncLocalStorage turns on V8's promise hooks for the whole process, which made
 * every promise of a rank cost more (measured: +1.3 µs on each awaited collective call).
 * An operation cannot tell which of several overlapping calls issued it, so it takes
 * the latest deadline among the calls in flight: exact when one call runs (the usual
 * case), never earlier than its own call's deadline when several overlap.
 */

/** Deadlines (performance.now() times) of the calls in flight, in no order. */
const inFlight: number[] = [];
/** The latest of `inFlight`, or Infinity when none is in flight. */
let latest = Number.POSITIVE_INFINITY;

function remove(deadlineMs: number): void {
  const at = inFlight.indexOf(deadlineMs);
  if (at >= 0) inFlight.splice(at, 1);
  latest = inFlight.length === 0 ? Number.POSITIVE_INFINITY : Math.max(...inFlight);
}

/**
 * Runs `fn` with `deadlineMs` (a performance.now() time) as its call's deadline, until
 * what it returns settles (or at once when it returns a plain value or throws).
 */
export function withCallDeadline<T>(deadlineMs: number, fn: () => T): T {
  inFlight.push(deadlineMs);
  latest = inFlight.length === 1 ? deadlineMs : Math.max(latest, deadlineMs);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    remove(deadlineMs);
    throw err;
  }
  const pending = result as { then?: unknown } | null;
  if (typeof pending?.then === 'function') {
    const done = () => remove(deadlineMs);
    (result as PromiseLike<unknown>).then(done, done);
  } else remove(deadlineMs);
  return result;
}

/** The current call's deadline (performance.now() time), or Infinity outside a call. */
export function callDeadline(): number {
  return latest;
}

/** Deadline of an operation starting at `now` with its own `timeoutMs`: capped by the call's deadline. */
export function opDeadline(timeoutMs: number, now = performance.now()): number {
  return Math.min(now + timeoutMs, callDeadline());
}
