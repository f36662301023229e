/**
 * `npm run bench -- <suite> [options]`: one entry for every benchmark suite. Prints
 * readable tables and writes JSON lines (the fields a comparison script
 * joins on: impl, op, world, bytes, graph, tensors, us, busbw, p50_us, s).
 *
 *   --json FILE       also append every record to FILE (JSON lines)
 *   --world N         ranks (suites that launch groups)
 *   --backend B       nccl | cpu
 *   --min-bytes N     smallest message of a sweep
 *   --max-bytes N     largest message of a sweep
 *   --mode M          process (default) | thread: how suites that launch ranks run them
 *   --share-devices   the ranks share GPU 0 (a rehearsal on fewer GPUs; host costs only)
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BenchOptions } from './options.ts';

const suites: Record<string, () => Promise<{ run: (opts: BenchOptions) => Promise<void> }>> = {
  store: () => import('./store.ts'),
  orchestrator: () => import('./orchestrator.ts'),
  collectives: () => import('./collectives.ts'),
  'collectives-cpu': () => import('./collectives-cpu.ts'),
  'collectives-host': () => import('./collectives-host.ts'),
  coordinator: () => import('./coordinator.ts'),
  graphs: () => import('./graphs.ts'),
  mq: () => import('./mq.ts'),
  weights: () => import('./weights.ts'),
  kvpipe: () => import('./kvpipe.ts'),
  copies: () => import('./copies.ts'),
  safetensors: () => import('./safetensors.ts'),
  compute: () => import('./compute.ts'),
};

const USAGE = `usage: npm run bench -- [suite ...] [options]

suites: ${Object.keys(suites).join(', ')} (default: all)

  --json FILE       also append every record to FILE (JSON lines)
  --world N         ranks (suites that launch groups; 1 runs where a suite has a one-rank form)
  --backend B       nccl | cpu
  --min-bytes N     smallest message of a sweep
  --max-bytes N     largest message of a sweep
  --mode M          process (default) | thread: how suites that launch ranks run them
  --share-devices   the ranks share GPU 0 (a rehearsal on fewer GPUs; host costs only)
  -h, --help        show this text`;

/** Prints `message` and the usage, and exits 2. */
function refuse(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${USAGE}\n`);
  return process.exit(2);
}

function commandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        json: { type: 'string' },
        world: { type: 'string' },
        backend: { type: 'string' },
        'min-bytes': { type: 'string' },
        'max-bytes': { type: 'string' },
        mode: { type: 'string' },
        'share-devices': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return refuse((err as Error).message);
  }
}

/** A positive integer option, or undefined when absent. */
function positive(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) refuse(`--${name} must be a positive integer, got '${text}'`);
  return n;
}

const { values, positionals } = commandLine();
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (values.backend !== undefined && values.backend !== 'nccl' && values.backend !== 'cpu')
  refuse(`--backend must be nccl or cpu, got '${values.backend}'`);

const names = positionals.length > 0 ? positionals : Object.keys(suites);
for (const name of names) {
  if (!suites[name]) {
    process.stderr.write(`unknown suite '${name}'; suites: ${Object.keys(suites).join(', ')}\n`);
    process.exit(2);
  }
}

const opts: BenchOptions = {
  json: (record) => {
    const line = JSON.stringify(record);
    process.stdout.write(`${line}\n`);
    if (values.json) appendFileSync(values.json, `${line}\n`);
  },
  log: (line) => process.stderr.write(`${line}\n`),
  world: positive('world', values.world),
  backend: values.backend as BenchOptions['backend'],
  minBytes: positive('min-bytes', values['min-bytes']),
  maxBytes: positive('max-bytes', values['max-bytes']),
  shareDevices: values['share-devices'] ?? false,
  modeGiven: values.mode !== undefined,
  mode:
    values.mode === 'thread'
      ? 'thread'
      : values.mode === undefined || values.mode === 'process'
        ? 'process'
        : undefined,
};
if (opts.mode === undefined) {
  process.stderr.write(`--mode must be 'process' or 'thread', got '${values.mode}'\n`);
  process.exit(2);
}

for (const name of names) {
  opts.log(`# suite ${name}`);
  try {
    const suite = await suites[name]();
    await suite.run(opts);
  } catch (err) {
    // One failing suite must not hide the figures of the others.
    process.exitCode = 1;
    opts.log(`suite ${name} failed: ${(err as Error).stack ?? String(err)}`);
  }
}
