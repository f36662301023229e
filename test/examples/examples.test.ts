// Every examples/*.ts, run as a user would (`npx tsx examples/<name>.ts --backend cpu`),
// one at a time: each checks its own result and must exit 0. New examples are picked up
// by themselves.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runNode } from '../cli/command.ts';

const examples = readdirSync(new URL('../../examples/', import.meta.url))
  .filter((f) => f.endsWith('.ts'))
  .sort();
/** Per example; each takes 1–3 s here, but CI has 2 cores and other test files run beside this one. */
const DEADLINE_MS = 60_000;

describe('examples on the CPU backend', () => {
  it('finds the examples', () => {
    expect(examples).toEqual(
      expect.arrayContaining(['quickstart.ts', 'tensor-parallel.ts', 'pipeline.ts', 'driver-loop.ts', 'two-nodes.ts']),
    );
  });

  for (const file of examples) {
    it(
      `${file} --backend cpu checks itself and exits 0`,
      async () => {
        const r = await runNode(['--import', 'tsx', `examples/${file}`, '--backend', 'cpu'], DEADLINE_MS);
        expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
        expect(r.stdout).not.toMatch(/FAILED/);
        expect(r.stdout.trim().length).toBeGreaterThan(0);
        if (file === 'quickstart.ts') {
          expect(r.stdout).toMatch(/backend +cpu/);
          expect(r.stdout).toMatch(/all-reduce +✓ 1 MiB float32 over 4 ranks: every element 10/);
          expect(r.stdout).toMatch(/tensor dict +✓/);
          expect(r.stdout).toMatch(/^OK: every check passed/m);
          expect(r.ms).toBeLessThan(10_000); // the demo's promise on a CPU machine
        }
      },
      DEADLINE_MS + 5_000,
    );
  }

  it('an example refuses a bad --backend with exit code 2', async () => {
    const r = await runNode(['--import', 'tsx', 'examples/tensor-parallel.ts', '--backend', 'mpi'], 20_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--backend must be cpu or nccl, got mpi/);
  }, 25_000);
});
