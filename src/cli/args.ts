/**
 * `gpugroup run`'s command line, torchrun's spelling: options come first, then the
 * script, then the script's own arguments (untouched, even when they look like ours).
 * `--nproc-per-node 4`, `--nproc-per-node=4` and torchrun's `--nproc_per_node=4` are
 * the same option.
 */
import { InvalidArgumentError } from '../errors.ts';
import { launcherNode } from '../parallel/launcher-env.ts';

/** What `gpugroup run` was asked to do. */
export interface RunOptions {
  /** Ranks started on this node: a number, or `gpu` for one per visible GPU. */
  nprocPerNode: number | 'gpu';
  nnodes: number;
  nodeRank: number;
  /** Where rank 0 serves the store (it is on node 0). */
  masterAddr: string;
  /** The store's port; null: a free port on a single node, 29500 across nodes (torchrun's default). */
  masterPort: number | null;
  /** Exported to the ranks as GPUGROUP_BACKEND; `auto` is resolved by the launcher. */
  backend: 'auto' | 'cpu' | 'nccl';
  /** How long a stopped rank gets between SIGTERM and SIGKILL. */
  graceMs: number;
  /** The TypeScript (or JavaScript) file every rank runs, and its arguments. */
  script: string;
  scriptArgs: string[];
}

/** The parse result: options to run, or a request for help. */
export type ParsedRun = { help: true } | { help: false; options: RunOptions };

/** torchrun's default store port for multi-node jobs. */
export const DEFAULT_MULTI_NODE_PORT = 29500;
const DEFAULT_GRACE_MS = 5_000;

/** Options that take a value, by their canonical (dashed) name. */
const VALUE_OPTIONS = [
  '--nproc-per-node',
  '--nnodes',
  '--node-rank',
  '--master-addr',
  '--master-port',
  '--backend',
  '--grace-ms',
] as const;
type ValueOption = (typeof VALUE_OPTIONS)[number];

export const RUN_USAGE = `Usage: gpugroup run [options] script.ts [script args...]

Starts one process per rank (SPMD, like torchrun); each runs the script (.js/.mjs
with plain node, .ts through tsx) with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
NODE_RANK, GROUP_RANK, MASTER_ADDR, MASTER_PORT, GPUGROUP_NODE_ID and GPUGROUP_BACKEND
set. In the script:

  import { initDistributedEnvironment, getWorldGroup } from 'gpugroup';
  await initDistributedEnvironment();

Options:
  --nproc-per-node N|gpu   ranks on this node (gpu: one per visible GPU)      [1]
  --nnodes N               number of nodes, one launcher each                  [1]
  --node-rank I            this node's index in [0, nnodes)                    [0]
  --master-addr HOST       where rank 0 (on node 0) serves the store   [127.0.0.1]
                           (one launcher per node under srun or mpirun: these
                           three default to the job's node count, index and
                           MASTER_ADDR or, under Slurm, its first host)
  --master-port PORT       the store's port [a free port; 29500 with --nnodes > 1]
  --backend cpu|nccl|auto  GPUGROUP_BACKEND for the ranks; auto: nccl when every
                           local rank has a GPU and libnccl loads, else cpu [auto]
  --grace-ms MS            SIGTERM→SIGKILL grace when stopping ranks        [5000]
  --standalone             single node on a free port (torchrun's flag)
  -h, --help               this text

When a rank fails, the launcher names it, stops the others (SIGTERM, then SIGKILL
after the grace) and exits with the failed rank's exit code (128+signal when it was
killed). Ctrl-C (SIGINT) and SIGTERM are forwarded to every rank.`;

function int(option: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(raw);
  const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in [${min}, ${max}]`;
  if (!/^\d+$/.test(raw) || n < min || n > max)
    throw new InvalidArgumentError(option, `expected an integer ${range}, got '${raw}'`);
  return n;
}

/** Parses the arguments after `run`; throws InvalidArgumentError naming the option. */
export function parseRunArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedRun {
  const values = new Map<ValueOption, string>();
  let standalone = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break; // the script: everything after it is its own
    if (arg === '-h' || arg === '--help') return { help: true };
    const eq = arg.indexOf('=');
    // torchrun accepts both --nproc-per-node and --nproc_per_node.
    const name = (eq === -1 ? arg : arg.slice(0, eq)).replaceAll('_', '-');
    if (name === '--standalone') {
      standalone = true;
      continue;
    }
    if (!(VALUE_OPTIONS as readonly string[]).includes(name))
      throw new InvalidArgumentError(name, `unknown option (see gpugroup run --help)`);
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw new InvalidArgumentError(name, 'needs a value');
    values.set(name as ValueOption, value);
  }
  const script = argv[i];
  if (script === undefined)
    throw new InvalidArgumentError('script', 'no script given (gpugroup run [options] script.ts [args...])');
  const nproc = values.get('--nproc-per-node') ?? '1';
  // One launcher per node under srun or mpirun: the node count, index and store host
  // come from there, unless the node count or index is given.
  const node = standalone || values.has('--nnodes') || values.has('--node-rank') ? undefined : launcherNode(env);
  const nnodes = int('--nnodes', values.get('--nnodes') ?? String(node?.nnodes ?? 1), 1);
  if (standalone && nnodes !== 1) throw new InvalidArgumentError('--standalone', 'means a single node; drop --nnodes');
  const nodeRank = int('--node-rank', values.get('--node-rank') ?? String(node?.nodeRank ?? 0), 0);
  if (nodeRank >= nnodes) throw new InvalidArgumentError('--node-rank', `${nodeRank} is out of range [0, ${nnodes})`);
  const port = values.get('--master-port') ?? (node?.masterPort === undefined ? undefined : String(node.masterPort));
  const backend = values.get('--backend') ?? 'auto';
  if (backend !== 'auto' && backend !== 'cpu' && backend !== 'nccl')
    throw new InvalidArgumentError('--backend', `expected cpu, nccl or auto, got '${backend}'`);
  const masterAddr = values.get('--master-addr') ?? node?.masterAddr ?? '127.0.0.1';
  if (masterAddr.length === 0) throw new InvalidArgumentError('--master-addr', 'expected a host name or address');
  return {
    help: false,
    options: {
      nprocPerNode: nproc === 'gpu' ? 'gpu' : int('--nproc-per-node', nproc, 1),
      nnodes,
      nodeRank,
      masterAddr,
      masterPort:
        port === undefined ? (nnodes > 1 ? DEFAULT_MULTI_NODE_PORT : null) : int('--master-port', port, 1, 65535),
      backend,
      graceMs: int('--grace-ms', values.get('--grace-ms') ?? String(DEFAULT_GRACE_MS), 0),
      script,
      scriptArgs: argv.slice(i + 1),
    },
  };
}
