// The README's settings table is the one npm run docs:settings makes from SETTINGS.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/env.ts';
import { settingsTable, tableCells, withSettingsTable } from '../../scripts/settings-table.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe("the README's settings table", () => {
  it('is the table generated from src/env.ts (run npm run docs:settings after changing a setting)', () => {
    expect(tableCells(readme)).toEqual(tableCells(withSettingsTable(readme)));
  });

  it('has one row per setting, with its default', () => {
    const table = settingsTable();
    for (const name of Object.keys(SETTINGS)) expect(table).toContain(`| \`${name}\` |`);
    expect(table).toContain('| `GPUGROUP_MQ_CHUNK_BYTES` | bytes ≥ 1 | `4194304 (4 MiB)` |');
    expect(table.split('\n')).toHaveLength(Object.keys(SETTINGS).length + 2);
  });
});
