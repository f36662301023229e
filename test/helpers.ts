// Shared test helpers: launching groups that are always shut down, and leak checks.
import { readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterEach } from 'vitest';
import { launchGroup, type Group, type LaunchOptions } from '../src/orchestrator/index.ts';

export const basicWorker = new URL('./fixtures/basic-worker.ts', import.meta.url);
export const MODES = ['thread', 'process'] as const;

const open: Group[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.shutdown()));
});

/** launchGroup on the CPU backend, shut down after the test. */
export async function launch(opts: Partial<LaunchOptions> & { mode: 'thread' | 'process' }): Promise<Group> {
  const group = await launchGroup({ worldSize: 4, worker: basicWorker, backend: 'cpu', timeoutMs: 20_000, ...opts });
  open.push(group);
  return group;
}

/**
 * group.callAll, but when a rank's call fails it waits for every rank and throws one
 * error with each rank's outcome: the first rejection alone seldom says which rank
 * held the others up.
 */
export async function callAllReported<T>(group: Group, fn: string, ...args: unknown[]): Promise<T[]> {
  const settled = await Promise.allSettled(group.ranks.map((r) => group.call<T>(r, fn, ...args)));
  if (settled.every((s) => s.status === 'fulfilled')) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
  const lines = settled.map(
    (s, r) =>
      `rank ${r}: ${s.status === 'fulfilled' ? 'ok' : `${(s.reason as Error).name}: ${(s.reason as Error).message}`}`,
  );
  throw new Error(`${fn} failed on some ranks:\n${lines.join('\n')}`);
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once `cond()` holds, or rejects after `ms`. */
export async function eventually(cond: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - t0;
}

/** True when nothing listens on `port` (we can bind it). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** gpugroup segments in /dev/shm. */
export function shmLeftovers(): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith('gpugroup-'));
}

/**
 * What each of two ranks returns from test/gpu/fixtures/close-reopen-worker.ts's
 * modelParallelTwice (one TP group of both, rank r holding r + 1): the TP all-reduce and
 * the input read back after the destroy, then the rebuilt TP group's and the world's
 * all-reduce.
 */
export const MODEL_PARALLEL_TWICE = [1, 2].map((own) => ({
  afterDestroy: [
    [3, 3, 3, 3],
    [own, own, own, own],
  ],
  second: [3, 3, 3, 3],
  world: [3, 3, 3, 3],
}));
