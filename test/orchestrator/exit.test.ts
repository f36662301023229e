// A coordinator script that never calls shutdown() ends by itself once its work is done,
// and its ranks with it (the script runs as a child process: test/fixtures/no-shutdown.ts).
import { describe, expect, it } from 'vitest';
import { jsonLines, runNode } from '../cli/command.ts';
import { MODES, alive, eventually } from '../helpers.ts';

const fixture = 'test/fixtures/no-shutdown.ts';

interface Line {
  at: number;
  result?: unknown;
  pids?: number[];
  callMs?: number;
  exit?: number;
  code?: number | null;
  signal?: string | null;
}

async function runScript(mode: string, ending: string) {
  const r = await runNode(['--import', 'tsx', fixture, mode, ending], 30_000);
  const ended = Date.now();
  const lines = jsonLines<Line>(r.stdout);
  const call = lines.find((l) => l.result !== undefined);
  expect(call, r.stderr).toBeDefined();
  return { r, ended, call: call!, exits: lines.filter((l) => l.exit !== undefined) };
}

describe.each(MODES)('a coordinator script without shutdown() in %s mode', (mode) => {
  it('exits with 0 within 3 s of its last call; its ranks tear down and exit 0 first', async () => {
    const { r, ended, call, exits } = await runScript(mode, 'allReduceRank');
    expect(r.code).toBe(0);
    expect(call.result).toEqual([
      [3, 3, 3, 3],
      [3, 3, 3, 3],
    ]);
    expect(ended - call.at).toBeLessThan(3_000);
    expect(exits.map((e) => [e.exit, e.code, e.signal]).sort()).toEqual([
      [0, 0, null],
      [1, 0, null],
    ]);
    if (mode === 'process') expect(call.pids!.filter(alive)).toEqual([]);
  }, 40_000);

  it('a pending call keeps it alive: a 1.5 s call completes, then the script exits', async () => {
    const { r, ended, call } = await runScript(mode, 'sleep');
    expect(r.code).toBe(0);
    expect(call.result).toBe('slept 1500 ms');
    expect(call.callMs).toBeGreaterThanOrEqual(1_500);
    expect(ended - call.at).toBeLessThan(3_000);
  }, 40_000);
});

describe('a coordinator that calls process.exit() without shutdown()', () => {
  it('takes its rank processes with it within 2 s', async () => {
    const { r, call } = await runScript('process', 'exit');
    expect(r.code).toBe(0);
    expect(call.pids).toHaveLength(2);
    const took = await eventually(() => !call.pids!.some(alive), 2_000, 'rank processes exit');
    expect(took).toBeLessThan(2_000);
  }, 40_000);
});
