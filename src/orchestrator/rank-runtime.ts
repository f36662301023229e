/**
 * The inside of a rank actor: receives its init, builds its context (store, groups,
 * communicators; see rank-setup.ts), imports the user's worker module and serves
 * calls. Errors go back as typed errors; an abort from the coordinator fires
 * ctx.abortSignal; a lost coordinator ends the process (process-entry.ts watches the
 * IPC channel).
 */
import { GroupClosedError, InvalidArgumentError } from '../errors.ts';
import { withCallDeadline } from '../comm/index.ts';
import { log, type LogLevel } from '../log.ts';
import { destroyDistributedEnvironment } from '../parallel/index.ts';
import type { RankContext } from './context.ts';
import { decodeError, dispatch, encodeError, sendReply, type FromRank, type ToRank } from './protocol.ts';
import { setupRank } from './rank-setup.ts';

/** How the runtime talks to its coordinator (a MessagePort or the IPC channel). */
export interface Endpoint {
  /** Throws synchronously when `msg` cannot be serialized. */
  send(msg: FromRank): void;
  onMessage(fn: (msg: ToRank) => void): void;
  /** Ends this actor with `code` once the messages already sent are on their way. */
  exit(code: number): void;
}

type WorkerModule = Record<string, unknown>;

/**
 * How long before the caller's deadline a call's operations time out: room for the
 * error to reach the coordinator (a tenth of the call's timeout, at least 100 ms or
 * half of a shorter timeout, at most 2 s).
 */
export function replyMarginMs(timeoutMs: number): number {
  return Math.min(2_000, Math.max(timeoutMs / 10, Math.min(100, timeoutMs / 2)));
}

function exportedFunctions(mod: WorkerModule): string[] {
  return Object.keys(mod).filter((k) => typeof mod[k] === 'function');
}

/** Serves one rank until shutdown. */
export function runRank(endpoint: Endpoint): void {
  const abort = new AbortController();
  let ctx: RankContext | null = null;
  let mod: WorkerModule | null = null;
  let rank = -1;

  // Logged here and surfaced as the group's 'log' event on the coordinator.
  const report = (level: LogLevel, message: string) => {
    log(level, `rank ${rank}`, message);
    endpoint.send({ kind: 'log', level, message });
  };

  const call = async (id: string, fn: string, args: unknown[], timeoutMs: number | undefined): Promise<void> => {
    const received = performance.now();
    let outcome: { value: unknown } | { error: unknown };
    try {
      if (!ctx || !mod) throw new GroupClosedError(`rank ${rank} is not ready`);
      const target = mod[fn];
      if (typeof target !== 'function') {
        throw new InvalidArgumentError(
          'fn',
          `the worker module exports no function '${fn}'; it exports: ${exportedFunctions(mod).join(', ') || '(none)'}`,
        );
      }
      const run = () => (target as (c: RankContext, ...a: unknown[]) => unknown)(ctx as RankContext, ...args);
      // Operations the call issues fail as CollectiveTimeoutError before the caller's own
      // deadline passes, so that the caller gets the flight recorder, not a bare CallTimeoutError.
      outcome = {
        value: await (timeoutMs === undefined
          ? run()
          : withCallDeadline(received + timeoutMs - replyMarginMs(timeoutMs), run)),
      };
    } catch (error) {
      outcome = { error };
    }
    sendReply(endpoint.send, id, fn, rank, outcome);
  };

  endpoint.onMessage((msg) =>
    dispatch(msg, {
      init: ({ init }) => {
        rank = init.rank;
        // The rank reports ready only once its store client and world group exist.
        setupRank(init, abort.signal)
          .then(async (context) => {
            ctx = context;
            mod = (await import(init.workerUrl)) as WorkerModule;
            endpoint.send({ kind: 'ready', rank, exports: exportedFunctions(mod) });
          })
          .catch((err: unknown) => {
            endpoint.send({ kind: 'fatal', error: encodeError(err, rank) });
            endpoint.exit(1);
          });
      },
      call: ({ id, fn, args, timeoutMs }) => void call(id, fn, args, timeoutMs),
      abort: ({ error }) => {
        if (!abort.signal.aborted) abort.abort(decodeError(error));
      },
      shutdown: () => {
        if (!abort.signal.aborted) abort.abort(new GroupClosedError('the group is shutting down'));
        destroyDistributedEnvironment()
          .catch((err: Error) => report('warn', `teardown of rank ${rank}: ${err.message}`))
          .finally(() => endpoint.exit(0));
      },
    }),
  );
}
