/**
 * The library's one logger (no console output elsewhere): silent unless GPUGROUP_LOG names a level
 * (`error`, `warn`, `info`, `debug`). Writes to stderr, one line per record.
 */
import { settingAtFirstUse } from './env.ts';

const levels = { error: 0, warn: 1, info: 2, debug: 3 } as const;
export type LogLevel = keyof typeof levels;

/** The configured level's rank (GPUGROUP_LOG, read at the first record; -1: silent). */
function configured(): number {
  const level = settingAtFirstUse('GPUGROUP_LOG');
  return level === '' ? -1 : levels[level];
}

/** True when records of `level` are written. */
export function logEnabled(level: LogLevel): boolean {
  return levels[level] <= configured();
}

/** Writes one record when its level is enabled. `scope` names the component. */
export function log(level: LogLevel, scope: string, message: string): void {
  if (levels[level] > configured()) return;
  process.stderr.write(`[gpugroup ${level} ${scope} pid=${process.pid}] ${message}\n`);
}
