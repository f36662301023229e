// The CPU communicator across real rank threads and processes (launchGroup): the transport
// each mode picks, and transfers many times the segment size.
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { launch } from '../helpers.ts';

const worker = new URL('./cpu-worker.ts', import.meta.url);
const f = (i: number, r: number): number => ((i * 7 + r * 13) % 101) - 50;
const ranks = [0, 1, 2, 3];
const n = 3001;
let started: number[] = [];

describe.each([
  ['thread', 'sab'],
  ['process', 'shm'],
] as const)('CPU communicator across %s ranks', (mode, expected) => {
  afterEach(() => {
    // Each rank unlinks its segment as soon as every peer has mapped it: nothing is left to leak.
    const left = readdirSync('/dev/shm').filter((name) => started.some((pid) => name.startsWith(`gpugroup-${pid}-`)));
    started = [];
    expect(left).toEqual([]);
  });

  it(`uses the ${expected} transport and moves tensors far larger than its buffers`, async () => {
    const group = await launch({ mode, worldSize: 4, worker });
    started = mode === 'process' ? [...group.pids] : [process.pid];
    expect(await group.callAll('transport')).toEqual([expected, expected, expected, expected]);
    const out = await group.callAll<{ sum: number[]; gathered: number[]; ring: number[] }>('chunked');
    const sum = Array.from({ length: n }, (_, i) => ranks.reduce((a, r) => a + f(i, r), 0));
    const gathered = ranks.flatMap((r) => Array.from({ length: n }, (_, i) => f(i, r)));
    out.forEach((o, r) => {
      expect(o.sum).toEqual(sum);
      expect(o.gathered).toEqual(gathered);
      expect(o.ring).toEqual(Array.from({ length: n }, (_, i) => f(i, (r + 3) % 4)));
    });
  });
});
