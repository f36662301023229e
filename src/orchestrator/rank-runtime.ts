/**
 * The inside of a rank actor: receives its init, builds its context (store, groups,
 * communicators), imports the user's worker module and serves calls. Errors go back
 * as typed errors; an abort from the coordinator fires ctx.abortSignal; a lost
 * coordinator ends the process (process mode watches the IPC channel).
 */
import { errorFromWire, errorToWire, GroupClosedError, InvalidArgumentError } from '../errors.ts';
import { log } from '../log.ts';
import { destroyDistributedEnvironment } from '../parallel/index.ts';
import type { RankContext } from './context.ts';
import { dispatch, type FromRank, type ToRank } from './protocol.ts';
import { setupRank } from './rank-setup.ts';

/** How the runtime talks to its coordinator (a MessagePort or the IPC channel). */
export interface Endpoint {
  send(msg: FromRank): void;
  onMessage(fn: (msg: ToRank) => void): void;
  exit(code: number): void;
}

type WorkerModule = Record<string, unknown>;

/** Serves one rank until shutdown. */
export function runRank(endpoint: Endpoint): void {
  const abort = new AbortController();
  let ctx: RankContext | null = null;
  let mod: WorkerModule | null = null;
  let rank = -1;

  const call = async (id: string, fn: string, args: unknown[]): Promise<void> => {
    try {
      if (!ctx || !mod) throw new GroupClosedError(`rank ${rank} is not ready`);
      const target = mod[fn];
      if (typeof target !== 'function') {
        const exported = Object.keys(mod).filter((k) => typeof mod![k] === 'function');
        throw new InvalidArgumentError('fn', `the worker module exports no function '${fn}'; it exports: ${exported.join(', ') || '(none)'}`);
      }
      const value = await (target as (c: RankContext, ...a: unknown[]) => unknown)(ctx, ...args);
      try {
        endpoint.send({ kind: 'result', id, value });
      } catch (err) {
        throw new InvalidArgumentError('result', `the result of '${fn}' cannot be sent to the coordinator (${(err as Error).message}); return plain data`);
      }
    } catch (err) {
      endpoint.send({ kind: 'error', id, error: errorToWire(err, rank) });
    }
  };

  endpoint.onMessage((msg) =>
    dispatch(msg, {
      init: ({ init }) => {
        rank = init.rank;
        setupRank(init, abort.signal)
          .then(async (context) => {
            ctx = context;
            mod = (await import(init.workerUrl)) as WorkerModule;
            endpoint.send({ kind: 'ready', rank, exports: Object.keys(mod).filter((k) => typeof mod![k] === 'function') });
          })
          .catch((err: unknown) => {
            endpoint.send({ kind: 'fatal', error: errorToWire(err, rank) });
            endpoint.exit(1);
          });
      },
      call: ({ id, fn, args }) => void call(id, fn, args),
      abort: ({ error }) => {
        if (!abort.signal.aborted) abort.abort(errorFromWire(error));
      },
      shutdown: () => {
        if (!abort.signal.aborted) abort.abort(new GroupClosedError('the group is shutting down'));
        destroyDistributedEnvironment()
          .catch((err: Error) => log('warn', 'rank', `teardown of rank ${rank}: ${err.message}`))
          .finally(() => endpoint.exit(0));
      },
    }),
  );
}
