// Every example answers --help with its usage (exit 0) and an option it does not take with
// the usage on stderr (exit 2), before starting anything.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runNode } from '../cli/command.ts';

const examples = readdirSync(new URL('../../examples/', import.meta.url))
  .filter((f) => f.endsWith('.ts'))
  .sort();

describe('examples take --help', () => {
  it.each(examples)(
    '%s --help prints its usage and exits 0',
    async (file) => {
      const r = await runNode(['--import', 'tsx', `examples/${file}`, '--help'], 30_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^usage: /);
      expect(r.stdout).toMatch(/--backend cpu\|nccl/);
      expect(r.stdout).toMatch(/-h, --help/);
      expect(r.stderr).toBe('');
    },
    35_000,
  );

  it('an unknown option is refused with the usage and exit code 2', async () => {
    const r = await runNode(['--import', 'tsx', 'examples/driver-loop.ts', '--world-size', '4'], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^driver-loop: Unknown option '--world-size'/);
    expect(r.stderr).toMatch(/usage: npx tsx examples\/driver-loop.ts/);
  }, 35_000);
});
