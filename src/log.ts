/**
 * The library's one logger (no console output elsewhere): silent unless GPUGROUP_LOG names a level
 * (`error`, `warn`, `info`, `debug`). Writes to stderr, one line per record.
 */
const levels = { error: 0, warn: 1, info: 2, debug: 3 } as const;
export type LogLevel = keyof typeof levels;

const configured = (process.env.GPUGROUP_LOG ?? '').toLowerCase();
const threshold: number = configured in levels ? levels[configured as LogLevel] : -1;

/** True when records of `level` are written. */
export function logEnabled(level: LogLevel): boolean {
  return levels[level] <= threshold;
}

/** Writes one record when its level is enabled. `scope` names the component. */
export function log(level: LogLevel, scope: string, message: string): void {
  if (levels[level] > threshold) return;
  process.stderr.write(`[gpugroup ${level} ${scope} pid=${process.pid}] ${message}\n`);
}
