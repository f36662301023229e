// Every examples/*.ts on the NCCL backend (`--backend nccl`); each checks its own result
// and must exit 0. Examples that need more GPUs than are visible are skipped by name.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runNode } from '../cli/command.ts';
import { gpus } from './world.ts';

const examples = readdirSync(new URL('../../examples/', import.meta.url))
  .filter((f) => f.endsWith('.ts'))
  .sort();
/** GPUs an example needs on NCCL; 2 unless listed. */
const NEEDS: Record<string, number> = { 'quickstart.ts': 1, 'pipeline.ts': 4, 'two-nodes.ts': 4 };
const DEADLINE_MS = 110_000;

describe.skipIf(gpus < 1)(`examples on the NCCL backend (${gpus} GPUs visible)`, () => {
  for (const file of examples) {
    const needs = NEEDS[file] ?? 2;
    it.skipIf(needs > gpus)(
      `${file} --backend nccl checks itself and exits 0${needs > 2 ? ` (needs ${needs} GPUs)` : ''}`,
      async () => {
        const r = await runNode(['--import', 'tsx', `examples/${file}`, '--backend', 'nccl'], DEADLINE_MS);
        expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
        expect(r.stdout).not.toMatch(/FAILED/);
        if (file === 'quickstart.ts') {
          expect(r.stdout).toMatch(/backend +nccl/);
          expect(r.stdout).toMatch(/devices +cuda:0 \S/); // the GPU's name
          expect(r.stdout).toMatch(/cuda graph +✓/);
          if (gpus === 1) expect(r.stdout).toMatch(/nccl 1 rank +✓/);
        }
      },
      DEADLINE_MS + 5_000,
    );
  }
});
