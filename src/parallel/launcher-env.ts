/**
 * Where this process stands in a job, from the variables its launcher set: torchrun
 * (and `gpugroup run`): RANK, WORLD_SIZE, LOCAL_RANK; Open MPI's mpirun:
 * OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE; Slurm's srun: SLURM_PROCID,
 * SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES. One launcher answers for the
 * ranks, in that order: torchrun's variables win, and Open MPI's come before Slurm's
 * because an mpirun inside a Slurm allocation leaves the allocation's SLURM_* variables
 * in every rank's environment. MASTER_ADDR and MASTER_PORT win whatever the launcher;
 * under Slurm the store's host defaults to the first host of the step's (or job's)
 * node list. Open MPI names no such host: set MASTER_ADDR (`mpirun -x MASTER_ADDR=…`).
 */
import { InvalidArgumentError } from '../errors.ts';

/** The launcher variables of this process, parsed. Fields a launcher does not set are absent. */
export interface LauncherEnv {
  /** Which launcher's variables gave the ranks; `none` when no launcher's are set. */
  readonly launcher: 'torchrun' | 'openmpi' | 'slurm' | 'none';
  readonly rank?: number;
  readonly worldSize?: number;
  readonly localRank?: number;
  /** Ranks on this node. */
  readonly localWorldSize?: number;
  /** This node's index among the job's nodes. */
  readonly nodeRank?: number;
  readonly nnodes?: number;
  readonly masterAddr?: string;
  readonly masterPort?: number;
}

type Env = Readonly<Record<string, string | undefined>>;

function int(env: Env, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(name, `expected a non-negative integer, got '${v}'`);
  return n;
}

/**
 * The first host of a Slurm node list in its compressed form: `node[01-04,07]` gives
 * `node01`, `gpu-a[3,5],gpu-b1` gives `gpu-a3`, `login1` gives `login1`. Each bracket
 * keeps the first entry as written (zero padding included).
 */
export function firstHost(nodelist: string): string {
  let depth = 0;
  let end = nodelist.length;
  for (let i = 0; i < nodelist.length; i++) {
    const c = nodelist[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      end = i;
      break;
    }
  }
  const host = nodelist.slice(0, end).replace(/\[([^\]]*)\]/g, (_, list: string) => list.split(/[,-]/)[0] ?? '');
  if (host.length === 0 || /[[\]]/.test(host))
    throw new InvalidArgumentError('SLURM_JOB_NODELIST', `cannot read '${nodelist}'`);
  return host;
}

/** Parses `env` (default: this process's environment). Throws InvalidArgumentError naming a malformed variable. */
export function launcherEnv(env: Env = process.env): LauncherEnv {
  const master = {
    ...(env.MASTER_ADDR ? { masterAddr: env.MASTER_ADDR } : {}),
    ...(int(env, 'MASTER_PORT') !== undefined ? { masterPort: int(env, 'MASTER_PORT') } : {}),
  };
  const set = (name: string) => env[name] !== undefined && env[name] !== '';
  if (set('RANK') || set('WORLD_SIZE')) {
    return clean<LauncherEnv>({
      launcher: 'torchrun',
      rank: int(env, 'RANK'),
      worldSize: int(env, 'WORLD_SIZE'),
      localRank: int(env, 'LOCAL_RANK'),
      localWorldSize: int(env, 'LOCAL_WORLD_SIZE'),
      nodeRank: int(env, 'GROUP_RANK') ?? int(env, 'NODE_RANK'),
      ...master,
    });
  }
  if (set('OMPI_COMM_WORLD_RANK') && set('OMPI_COMM_WORLD_SIZE')) {
    return clean<LauncherEnv>({
      launcher: 'openmpi',
      rank: int(env, 'OMPI_COMM_WORLD_RANK'),
      worldSize: int(env, 'OMPI_COMM_WORLD_SIZE'),
      localRank: int(env, 'OMPI_COMM_WORLD_LOCAL_RANK'),
      localWorldSize: int(env, 'OMPI_COMM_WORLD_LOCAL_SIZE'),
      ...master,
    });
  }
  if (set('SLURM_PROCID') && set('SLURM_NTASKS')) {
    const nodelist = env.SLURM_STEP_NODELIST || env.SLURM_JOB_NODELIST || env.SLURM_NODELIST;
    return clean<LauncherEnv>({
      launcher: 'slurm',
      rank: int(env, 'SLURM_PROCID'),
      worldSize: int(env, 'SLURM_NTASKS'),
      localRank: int(env, 'SLURM_LOCALID'),
      nodeRank: int(env, 'SLURM_NODEID'),
      nnodes: int(env, 'SLURM_STEP_NUM_NODES') ?? int(env, 'SLURM_NNODES') ?? int(env, 'SLURM_JOB_NUM_NODES'),
      ...(nodelist ? { masterAddr: firstHost(nodelist) } : {}),
      ...master,
    });
  }
  return { launcher: 'none', ...master };
}

/** `e` without its undefined fields. */
function clean<T extends object>(e: { [K in keyof T]: T[K] | undefined }): T {
  return Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as T;
}

/** What a launcher started once per node learns from its own scheduler. */
export interface LauncherNode {
  readonly nodeRank: number;
  readonly nnodes: number;
  readonly masterAddr?: string;
  readonly masterPort?: number;
}

/**
 * For a launcher (`gpugroup run`) started as one task per node by srun
 * (`--ntasks-per-node=1`) or mpirun (`--npernode 1`): its node's index, the node count
 * and the store's host. Undefined when neither scheduler started this process that way.
 */
export function launcherNode(env: Env = process.env): LauncherNode | undefined {
  const e = launcherEnv(env);
  const onePerNode =
    (e.launcher === 'slurm' && e.worldSize === e.nnodes) || (e.launcher === 'openmpi' && e.localWorldSize === 1);
  if (!onePerNode || e.rank === undefined || e.worldSize === undefined) return undefined;
  return clean({
    nodeRank: e.rank,
    nnodes: e.worldSize,
    masterAddr: e.masterAddr,
    masterPort: e.masterPort,
  }) as LauncherNode;
}
