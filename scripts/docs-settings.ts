// `npm run docs:settings`: writes the settings table (scripts/settings-table.ts) into
// README.md, then lets Biome align its columns.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withSettingsTable } from './settings-table.ts';

const readme = new URL('../README.md', import.meta.url);
writeFileSync(readme, withSettingsTable(readFileSync(readme, 'utf8')));
execFileSync('npx', ['biome', 'format', '--write', fileURLToPath(readme)], { stdio: 'ignore' });
