/**
 * One way to start a rank per mode: a child process through fork (tsx passed
 * explicitly, so it works from any entry point) or a worker thread through a small
 * .mjs entry that registers tsx inside the thread (notes/node-stack §6). Both give the
 * coordinator the same {@link RankChannel}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FromRank, ToRank } from './protocol.ts';

/** The coordinator's handle on one rank actor. */
export interface RankChannel {
  readonly pid: number;
  send(msg: ToRank): void;
  onMessage(fn: (msg: FromRank) => void): void;
  /** Called once when the actor is gone, with its exit code or signal. */
  onExit(fn: (code: number | null, signal: string | null, error?: Error) => void): void;
  /** Ends the actor at once (SIGKILL / terminate). */
  kill(): void;
}

const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const processEntry = new URL('../../workers/process-entry.ts', import.meta.url);
const threadEntry = new URL('../../workers/thread-entry.mjs', import.meta.url);

/** Starts a rank as a child process. */
export function spawnProcess(env: Record<string, string>): RankChannel {
  const child: ChildProcess = fork(processEntry, [], {
    execArgv: ['--import', tsxLoader],
    serialization: 'advanced',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let exited = false;
  return {
    pid: child.pid ?? -1,
    send: (msg) => {
      if (child.connected) child.send(msg, (err) => err && undefined);
    },
    onMessage: (fn) => child.on('message', (m) => fn(m as FromRank)),
    onExit: (fn) => {
      child.once('exit', (code, signal) => {
        exited = true;
        fn(code, signal);
      });
      child.once('error', (err) => {
        if (!exited && child.exitCode === null && child.pid === undefined) fn(null, null, err);
      });
    },
    kill: () => {
      if (!exited) child.kill('SIGKILL');
    },
  };
}

/** Starts a rank as a worker thread of this process. */
export function spawnThread(env: Record<string, string>): RankChannel {
  const worker = new Worker(threadEntry, { env: { ...process.env, ...env }, stdout: false, stderr: false });
  let lastError: Error | undefined;
  worker.on('error', (err) => {
    lastError = err;
  });
  return {
    pid: process.pid,
    send: (msg) => worker.postMessage(msg),
    onMessage: (fn) => worker.on('message', (m) => fn(m as FromRank)),
    onExit: (fn) => worker.once('exit', (code) => fn(code, null, lastError)),
    kill: () => void worker.terminate(),
  };
}
