// The package as a user gets it: `npm pack`, the tarball installed into an empty project
// (its dependencies from the registry or npm's cache), then plain `node` on plain
// JavaScript (a two-rank all-reduce in process and thread mode, `npx gpugroup run`)
// and `tsc` on a TypeScript consumer (strict, nodenext, skipLibCheck off and on).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
/** The README's JavaScript blocks whose first line names a file (`// main.mjs`), by that name. */
const readmeFiles = Object.fromEntries(
  [...readme.matchAll(/```js\n\/\/ (\S+\.mjs)\n([\s\S]*?)```/g)].map((m) => [m[1]!, `// ${m[1]}\n${m[2]}`]),
);
const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
const run = promisify(execFile);
const STEP_MS = 120_000;

let dir = '';
let project = '';
let tarball = '';
let packedFiles: string[] = [];

async function sh(file: string, args: string[], cwd = project) {
  try {
    return await run(file, args, { cwd, timeout: STEP_MS, env: { ...process.env, NO_COLOR: '1' } });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${e.message}\n--- stdout\n${e.stdout}\n--- stderr\n${e.stderr}`);
  }
}

const files: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  'worker.mjs': `import { Tensor } from 'gpugroup';
export async function sum(ctx) {
  const x = Tensor.fromArray([ctx.rank + 1, 10 * (ctx.rank + 1)], { dtype: 'float32', device: ctx.device });
  const y = await ctx.world.allReduce(x);
  return Array.from(await y.toArray());
}
`,
  'main.mjs': `import { launchGroup } from 'gpugroup';
const [mode, worker = './worker.mjs'] = process.argv.slice(2);
const group = await launchGroup({ worldSize: 2, worker: new URL(worker, import.meta.url), backend: 'cpu', mode });
console.log(mode, JSON.stringify(await group.callAll('sum')));
await group.shutdown();
`,
  'worker.ts': `export function sum(): number[] {
  return [0];
}
`,
  'consumer.ts': `import { launchGroup, Tensor, type GroupCoordinator, type RankContext } from 'gpugroup';
import { nccl } from 'gpugroup/native';

export async function sum(ctx: RankContext): Promise<number[]> {
  const world: GroupCoordinator = ctx.world;
  const y = await world.allReduce(Tensor.fromArray([ctx.rank + 1], { dtype: 'float32', device: ctx.device }));
  return Array.from(await y.toArray(), Number);
}
const group = await launchGroup({ worldSize: 2, worker: new URL('./worker.mjs', import.meta.url), backend: 'cpu' });
const sums: number[][] = await group.callAll('sum');
console.log(sums, typeof nccl);
await group.shutdown();
`,
};

// What `tsc --init` writes today (strict, module nodenext), with moduleResolution
// nodenext spelled out; `node` in `types` as a Node program has it (with @types/node).
function tsconfig(skipLibCheck: boolean, types: string[]): string {
  return JSON.stringify({
    compilerOptions: {
      module: 'nodenext',
      moduleResolution: 'nodenext',
      target: 'esnext',
      types,
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      verbatimModuleSyntax: true,
      isolatedModules: true,
      noUncheckedSideEffectImports: true,
      moduleDetection: 'force',
      skipLibCheck,
      noEmit: true,
    },
    files: ['consumer.ts'],
  });
}

const TSCONFIGS: Record<string, string> = {
  'strict.json': tsconfig(false, ['node']),
  'skiplib.json': tsconfig(true, ['node']),
  'init.json': tsconfig(true, []),
};

describe('the packed tarball in an empty project', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gpugroup-consumer-'));
    project = join(dir, 'project');
    const { stdout } = await sh('npm', ['pack', '--json', '--pack-destination', dir, '--loglevel=error'], repoRoot);
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    tarball = packed!.filename;
    packedFiles = packed!.files.map((f) => f.path);
    mkdirSync(project);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(project, name), text);
    mkdirSync(join(project, 'readme'));
    for (const [name, text] of Object.entries(readmeFiles)) writeFileSync(join(project, 'readme', name), text);
    for (const [name, text] of Object.entries(TSCONFIGS)) writeFileSync(join(project, `tsconfig.${name}`), text);
    await sh('npm', [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
      join(dir, tarball),
      '@types/node@^20.19.0',
    ]);
  }, 3 * STEP_MS);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds dist/, bin/, README.md, LICENSE, CHANGELOG.md and package.json, nothing else', () => {
    const top = ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'];
    expect(packedFiles.filter((f) => !top.includes(f) && !/^(dist|bin)\//.test(f))).toEqual([]);
    for (const f of [...top, 'bin/gpugroup.mjs', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.js.map'])
      expect(packedFiles).toContain(f);
    expect(packedFiles.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it.each(['process', 'thread'])('plain node runs a two-rank all-reduce in %s mode', async (mode) => {
    const { stdout } = await sh(process.execPath, ['main.mjs', mode]);
    expect(stdout.trim()).toBe(`${mode} [[3,30],[3,30]]`);
  });

  it("runs the README's quick start verbatim (worker.mjs, main.mjs)", async () => {
    expect(Object.keys(readmeFiles)).toEqual(expect.arrayContaining(['worker.mjs', 'main.mjs', 'train.mjs']));
    const { stdout } = await sh(process.execPath, ['main.mjs'], join(project, 'readme'));
    expect(stdout.trim()).toBe('[ 3, 3 ]');
  });

  it("npx gpugroup run starts the README's plain .mjs SPMD script on two ranks", async () => {
    const { stdout } = await sh('npx', [
      '--no-install',
      'gpugroup',
      'run',
      '--nproc-per-node',
      '2',
      '--backend',
      'cpu',
      'readme/train.mjs',
    ]);
    expect(stdout.trim().split('\n').sort()).toEqual(['rank 0: 3', 'rank 1: 3']);
  });

  it('a TypeScript worker module without tsx installed is refused naming the worker, before any rank starts', async () => {
    const err = await sh(process.execPath, ['main.mjs', 'process', './worker.ts']).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /InvalidArgumentError: worker: .*worker\.ts is TypeScript.*tsx was not found/,
    );
  });

  it.each(Object.keys(TSCONFIGS))(
    'tsc type-checks a TypeScript consumer with zero errors (tsconfig.%s)',
    async (cfg) => {
      const { stdout } = await sh(process.execPath, [tsc, '-p', `tsconfig.${cfg}`]);
      expect(stdout).toBe('');
    },
  );
});
