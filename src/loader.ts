/**
 * TypeScript at run time. Installed, gpugroup is compiled JavaScript (dist/) and plain
 * Node runs it; in a source checkout (tests, examples, development) it runs its own .ts
 * sources through tsx. A user module that is TypeScript (a launchGroup worker, a
 * `gpugroup run` script) needs tsx too: it is looked up from that module first (the
 * user's own install), then from gpugroup's.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { InvalidArgumentError } from './errors.ts';

/** True when gpugroup runs from its .ts sources, false from compiled dist/. */
export const fromSources: boolean = import.meta.url.endsWith('.ts');

/** The extension gpugroup's own modules have as they run now. */
export const ownExtension: '.ts' | '.js' = fromSources ? '.ts' : '.js';

/** tsx, as a rank needs it: `loader` for `node --import`, `api` for register() in a worker thread. */
export interface TsLoader {
  readonly loader: string;
  readonly api: string;
}

/** Whether `file` (a path or file: URL) is a TypeScript module. */
export function isTypeScript(file: string): boolean {
  return /\.[cm]?tsx?$/.test(file.startsWith('file:') ? new URL(file).pathname : file);
}

/** tsx as seen from `from` (a path or file: URL), then from gpugroup itself; undefined when neither finds it. */
export function findTsx(from: string): TsLoader | undefined {
  for (const base of [from.startsWith('file:') ? fileURLToPath(from) : from, fileURLToPath(import.meta.url)]) {
    let manifest: string;
    try {
      manifest = createRequire(base).resolve('tsx/package.json');
    } catch {
      continue;
    }
    // The two entry points tsx exports: "." (what `--import tsx` loads) and the ESM
    // "./esm/api" (register()); a worker thread must register tsx itself (nodejs/node#47747).
    const exports = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports?: Record<string, unknown> }).exports;
    const loader = exports?.['.'];
    const api = (exports?.['./esm/api'] as { import?: { default?: unknown } } | undefined)?.import?.default;
    if (typeof loader !== 'string' || typeof api !== 'string') continue;
    const dir = dirname(manifest);
    return { loader: pathToFileURL(join(dir, loader)).href, api: pathToFileURL(join(dir, api)).href };
  }
  return undefined;
}

/**
 * The loader a process or thread needs to run `moduleUrl`: tsx when gpugroup runs from
 * its sources or `moduleUrl` is TypeScript, else none (plain Node). Throws
 * {@link InvalidArgumentError} naming `argument` when tsx is needed and not installed.
 */
export function loaderFor(moduleUrl: string, argument: string): TsLoader | undefined {
  if (!fromSources && !isTypeScript(moduleUrl)) return undefined;
  const found = findTsx(moduleUrl);
  if (found) return found;
  const file = moduleUrl.startsWith('file:') ? fileURLToPath(moduleUrl) : moduleUrl;
  throw new InvalidArgumentError(
    argument,
    `${file} is TypeScript, which runs through tsx, and tsx was not found (npm install --save-dev tsx), or use a .js/.mjs module`,
  );
}
