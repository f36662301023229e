// Leak probes for the orchestrator tests: this process's children and its handles.
import { readdirSync, readFileSync } from 'node:fs';

/** Pids of live processes whose parent is this process (from /proc). */
export function childPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state, ppid, ...
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') pids.push(Number(entry));
    } catch {
      // The process left while we looked.
    }
  }
  return pids;
}

/** Counts of this process's active handles by kind, without timers (vitest's come and go). */
export function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  delete counts.Timeout;
  return counts;
}
