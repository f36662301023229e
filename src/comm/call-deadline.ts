/**
 * The deadline of the actor call an operation belongs to. A collective that only some
 * ranks enter must fail as a CollectiveTimeoutError (with the flight recorder), not
 * as the caller's bare call timeout: so an operation's deadline is its own timeout or
 * the deadline of the call that issued it, whichever comes first. The rank runtime
 * runs each call inside {@link withCallDeadline}; AsyncLocalStorage carries the
 * deadline through the call's awaits, so concurrent calls keep their own.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const calls = new AsyncLocalStorage<number>();

/** Runs `fn` (and everything it awaits) with `deadlineMs` (a performance.now() time) as its call's deadline. */
export function withCallDeadline<T>(deadlineMs: number, fn: () => T): T {
  return calls.run(deadlineMs, fn);
}

/** The current call's deadline (performance.now() time), or Infinity outside a call. */
export function callDeadline(): number {
  return calls.getStore() ?? Number.POSITIVE_INFINITY;
}

/** Deadline of an operation starting at `now` with its own `timeoutMs`: capped by the call's deadline. */
export function opDeadline(timeoutMs: number, now = performance.now()): number {
  return Math.min(now + timeoutMs, callDeadline());
}
