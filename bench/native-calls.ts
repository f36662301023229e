/**
 * Counts the native calls (libcudart, libnccl) one public collective call makes: every
 * function of the bound tables is wrapped in a counter for the duration of `fn`, then
 * put back. Bench-only (collectives-host); the library never counts.
 */
import { cuda, nccl } from '../native/index.ts';

type AnyFn = (...args: unknown[]) => unknown;

/** Runs `fn` with every cuda() and nccl() function counted; returns calls per function. */
export async function countNativeCalls(fn: () => Promise<void>): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const restore: (() => void)[] = [];
  for (const table of [cuda(), nccl()] as unknown as Record<string, unknown>[]) {
    for (const [name, value] of Object.entries(table)) {
      if (typeof value !== 'function') continue;
      const original = value as AnyFn;
      table[name] = (...args: unknown[]) => {
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return original(...args);
      };
      restore.push(() => {
        table[name] = original;
      });
    }
  }
  try {
    await fn();
  } finally {
    for (const undo of restore) undo();
  }
  return counts;
}

/** `name ×k` per function, calls per op (`n` ops), most frequent first; `none` if empty. */
export function formatPerOp(counts: Map<string, number>, n: number): string {
  const rows = [...counts].sort((a, b) => b[1] - a[1]).map(([name, c]) => `${name} ×${round(c / n)}`);
  return rows.length === 0 ? 'none' : rows.join(', ');
}

function round(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
