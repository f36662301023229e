/**
 * One way to start a rank per mode: a child process through fork or a worker thread
 * through a small .mjs entry. Where the rank needs tsx (gpugroup running from its
 * sources, or a TypeScript worker module) the child gets `--import tsx` and the thread
 * registers tsx itself before importing anything (nodejs/node#47747). Both give the
 * coordinator the same {@link RankChannel}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { removeSegmentsOf } from '../comm/shm.ts';
import { loaderFor, ownExtension } from '../loader.ts';
import type { FromRank, ToRank } from './protocol.ts';

/** The coordinator's handle on one rank actor. */
export interface RankChannel {
  /** OS process id of the actor (the coordinator's own pid for a thread). */
  readonly pid: number;
  send(msg: ToRank): void;
  onMessage(fn: (msg: FromRank) => void): void;
  /**
   * Called once when the actor is gone, with its exit code or signal, after every
   * message it sent has been delivered. `error` is what ended it, when the runtime knows.
   */
  onExit(fn: (code: number | null, signal: string | null, error?: Error) => void): void;
  /** Ends the actor at once (SIGKILL / terminate). */
  kill(): void;
  /**
   * Whether the actor's handles (the child process and its IPC channel, or the worker
   * thread) keep this process's event loop alive. The coordinator holds the loop only
   * while it waits on the actor, so a script that is done can end.
   */
  holdLoop(hold: boolean): void;
}

const processEntry = new URL(`../../workers/process-entry${ownExtension}`, import.meta.url);
const threadEntry = new URL('../../workers/thread-entry.mjs', import.meta.url);
const rankRuntime = new URL(`./rank-runtime${ownExtension}`, import.meta.url).href;

/**
 * How long to wait after a child's 'exit' for its IPC channel to close. 'close' comes
 * only after every message the child wrote was read (so a last `fatal` is never lost);
 * a grandchild that inherited the channel could hold it open, hence the bound.
 */
const CLOSE_AFTER_EXIT_MS = 500;

/**
 * Starts a rank as a child process; `env` is added to this process's environment.
 * `workerUrl` (the user's module) decides whether the child needs tsx.
 */
export function spawnProcess(env: Record<string, string>, workerUrl: string): RankChannel {
  const loader = loaderFor(workerUrl, 'worker');
  const child: ChildProcess = fork(processEntry, [], {
    execArgv: loader ? ['--import', loader.loader] : [],
    serialization: 'advanced', // typed arrays, Maps and BigInts survive (v8 serializer)
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let gone = false;
  return {
    pid: child.pid ?? -1,
    send: (msg) => {
      // A dead child's channel is closed: the exit handler fails its calls instead.
      if (child.connected) child.send(msg, () => undefined);
    },
    onMessage: (fn) => child.on('message', (m) => fn(m as FromRank)),
    onExit: (fn) => {
      const done = (code: number | null, signal: string | null, error?: Error) => {
        if (gone) return;
        gone = true;
        clearTimeout(timer);
        if (child.pid !== undefined) removeSegmentsOf(child.pid);
        fn(code, signal, error);
      };
      let timer: NodeJS.Timeout | undefined;
      child.once('close', (code, signal) => done(code, signal));
      child.once('exit', (code, signal) => {
        timer = setTimeout(() => done(code, signal), CLOSE_AFTER_EXIT_MS);
      });
      // fork() failed to start the process at all (no 'exit' will come). A persistent
      // listener: an 'error' without one would throw in the coordinator.
      child.on('error', (err) => {
        if (child.pid === undefined) done(null, null, err);
      });
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    holdLoop: (hold) => {
      // ChildProcess.channel's ref()/unref() override the ref counting Node does for
      // 'message' listeners.
      if (hold) {
        child.ref();
        child.channel?.ref();
      } else {
        child.unref();
        child.channel?.unref();
      }
    },
  };
}

/** Starts a rank as a worker thread of this process; `env` is added to its own copy of the environment. */
export function spawnThread(env: Record<string, string>, workerUrl: string): RankChannel {
  const workerData = { tsx: loaderFor(workerUrl, 'worker')?.api, runtime: rankRuntime };
  const worker = new Worker(threadEntry, { env: { ...process.env, ...env }, workerData, stdout: false, stderr: false });
  let lastError: Error | undefined;
  // An uncaught exception or unhandled rejection in the thread: kept to name the cause.
  worker.on('error', (err) => {
    lastError = err;
  });
  return {
    pid: process.pid,
    send: (msg) => worker.postMessage(msg),
    onMessage: (fn) => worker.on('message', (m) => fn(m as FromRank)),
    onExit: (fn) => worker.once('exit', (code) => fn(code, null, lastError)),
    kill: () => void worker.terminate(),
    holdLoop: (hold) => (hold ? worker.ref() : worker.unref()),
  };
}
