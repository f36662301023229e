#!/usr/bin/env node
// `npm run build`: dist/ as the package ships it. tsc compiles src/, native/ and
// workers/ (ESM .js with source maps, .d.ts); the plain-JavaScript worker-thread entries
// are copied beside them; relative `.ts` specifiers left in the declarations become
// `.js`, as in the emitted JavaScript (rewriteRelativeImportExtensions covers only that).
import { execFileSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
for (const f of readdirSync(join(root, 'workers')).filter((f) => f.endsWith('.mjs')))
  copyFileSync(join(root, 'workers', f), join(dist, 'workers', f));
for (const f of readdirSync(dist, { recursive: true }).filter((f) => f.endsWith('.d.ts'))) {
  const file = join(dist, f);
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(/((?:from|import\()\s*'\.{1,2}\/[^']*)\.ts'/g, "$1.js'");
  if (fixed !== text) writeFileSync(file, fixed);
}
