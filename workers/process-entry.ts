// Entry of a rank actor in its own process (forked by the coordinator with tsx loaded).
import { runRank } from '../src/orchestrator/rank-runtime.ts';
import { encodeError, type FromRank, type ToRank } from '../src/orchestrator/protocol.ts';

// The coordinator is gone (even SIGKILLed): leave at once rather than orphan a GPU.
process.on('disconnect', () => process.exit(1));

// Sends are asynchronous: exit() waits (boundedly) until the last one is written, so a
// final `fatal` or `log` reaches the coordinator.
let inFlight = 0;
let onDrained: (() => void) | null = null;
const EXIT_FLUSH_MS = 1_000;

function send(msg: FromRank): void {
  if (!process.connected) return;
  process.send!(msg, () => {
    if (--inFlight === 0) onDrained?.();
  });
  inFlight++; // after send(): a message that cannot be serialized throws first
}

function exit(code: number): void {
  if (inFlight === 0 || !process.connected) process.exit(code);
  onDrained = () => process.exit(code);
  setTimeout(() => process.exit(code), EXIT_FLUSH_MS).unref();
}

// Name the cause of an uncaught exception or unhandled rejection before Node's default
// handling prints it and exits with code 1 (the monitor does not change that behaviour).
process.on('uncaughtExceptionMonitor', (err) => {
  try {
    send({ kind: 'fatal', error: encodeError(err, Number(process.env.RANK ?? -1)) });
  } catch {
    // The process is dying anyway; the coordinator still sees the exit code.
  }
});

runRank({ send, onMessage: (fn) => process.on('message', (m) => fn(m as ToRank)), exit });
