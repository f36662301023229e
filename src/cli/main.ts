/**
 * The `gpugroup` command (bin/gpugroup.mjs calls {@link main}).
 *
 *   gpugroup run [options] script.ts [args...]   SPMD ranks, torchrun-style
 *   gpugroup --help | --version
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.ts';
import { fromSources } from '../loader.ts';
import { RUN_USAGE, parseRunArgs } from './args.ts';
import { planRun, runRanks } from './run.ts';

const USAGE = `Usage: gpugroup <command> [options]

Commands:
  run [options] script.ts [args...]   start one process per rank, like torchrun
                                      (gpugroup run --help for the options)

Options:
  -h, --help      this text
  -v, --version   the gpugroup version

Example:
  npx gpugroup run --nproc-per-node 2 train.ts --steps 10`;

/** Exit code of a command-line mistake (as argparse and torchrun use). */
const USAGE_EXIT = 2;

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL(fromSources ? '../../package.json' : '../../../package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  return pkg.version;
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    (command === undefined ? log : (l: string) => process.stdout.write(`${l}\n`))(USAGE);
    return command === undefined ? USAGE_EXIT : 0;
  }
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command !== 'run') {
    log(`gpugroup: unknown command '${command}'\n\n${USAGE}`);
    return USAGE_EXIT;
  }
  try {
    const parsed = parseRunArgs(rest);
    if (parsed.help) {
      process.stdout.write(`${RUN_USAGE}\n`);
      return 0;
    }
    const plan = await planRun(parsed.options);
    const result = await runRanks(plan, log);
    return result.exitCode;
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      log(`gpugroup run: ${err.message}`);
      return USAGE_EXIT;
    }
    throw err;
  }
}
