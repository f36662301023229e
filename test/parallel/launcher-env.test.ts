// Ranks from the launcher a user already has: torchrun's variables, Open MPI's mpirun,
// Slurm's srun (src/parallel/launcher-env.ts), and SPMD jobs started with each set.
import { describe, expect, it } from 'vitest';
import { parseRunArgs } from '../../src/cli/args.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { firstHost, launcherEnv, launcherNode } from '../../src/parallel/launcher-env.ts';
import { freePort } from '../../src/store/index.ts';
import { jsonLines, runNode } from '../cli/command.ts';

// As srun sets them for task 5 of `srun --nodes=2 --ntasks-per-node=4` (plus what it inherits).
const slurmTask5 = {
  SLURM_JOB_ID: '4242',
  SLURM_JOB_NODELIST: 'gpu[07-08]',
  SLURM_STEP_NODELIST: 'gpu[07-08]',
  SLURM_NNODES: '2',
  SLURM_JOB_NUM_NODES: '2',
  SLURM_STEP_NUM_NODES: '2',
  SLURM_NTASKS: '8',
  SLURM_STEP_NUM_TASKS: '8',
  SLURM_NTASKS_PER_NODE: '4',
  SLURM_PROCID: '5',
  SLURM_LOCALID: '1',
  SLURM_NODEID: '1',
  SLURMD_NODENAME: 'gpu08',
};
// As mpirun sets them for rank 3 of `mpirun -np 4 --npernode 2`.
const ompiRank3 = {
  OMPI_COMM_WORLD_RANK: '3',
  OMPI_COMM_WORLD_SIZE: '4',
  OMPI_COMM_WORLD_LOCAL_RANK: '1',
  OMPI_COMM_WORLD_LOCAL_SIZE: '2',
  OMPI_COMM_WORLD_NODE_RANK: '1',
  OMPI_UNIVERSE_SIZE: '4',
};

describe('firstHost reads a Slurm node list', () => {
  it.each([
    ['node01', 'node01'],
    ['node[01-04,07]', 'node01'],
    ['node[07,01-04]', 'node07'],
    ['gpu-a[3,5],gpu-b1', 'gpu-a3'],
    ['a1,b2', 'a1'],
    ['rack[1-2]-node[003-004]', 'rack1-node003'],
    ['n[0010-0012]', 'n0010'],
  ])('%s → %s', (list, host) => {
    expect(firstHost(list)).toBe(host);
  });

  it('refuses an unbalanced list, naming the variable', () => {
    expect(() => firstHost('node[01-04')).toThrow(InvalidArgumentError);
    expect(() => firstHost('node[01-04')).toThrow(/SLURM_JOB_NODELIST/);
  });
});

describe('launcherEnv', () => {
  it('reads Slurm: rank, size, local rank, node, node count, first host as the master', () => {
    expect(launcherEnv(slurmTask5)).toEqual({
      launcher: 'slurm',
      rank: 5,
      worldSize: 8,
      localRank: 1,
      nodeRank: 1,
      nnodes: 2,
      masterAddr: 'gpu07',
    });
  });

  it('takes MASTER_ADDR and MASTER_PORT over the node list under Slurm', () => {
    const e = launcherEnv({ ...slurmTask5, MASTER_ADDR: '10.0.0.7', MASTER_PORT: '29400' });
    expect(e).toMatchObject({ launcher: 'slurm', rank: 5, masterAddr: '10.0.0.7', masterPort: 29400 });
  });

  it('reads Open MPI: rank, size, local rank and local size; no master without MASTER_ADDR', () => {
    expect(launcherEnv(ompiRank3)).toEqual({
      launcher: 'openmpi',
      rank: 3,
      worldSize: 4,
      localRank: 1,
      localWorldSize: 2,
    });
  });

  it("prefers Open MPI's variables to the Slurm allocation's an mpirun inherits", () => {
    const inherited = { SLURM_JOB_NODELIST: 'cn[1-2]', SLURM_NTASKS: '4', SLURM_PROCID: '0', SLURM_NNODES: '2' };
    expect(launcherEnv({ ...inherited, ...ompiRank3 })).toMatchObject({ launcher: 'openmpi', rank: 3, worldSize: 4 });
  });

  it("lets torchrun's variables win over Slurm's and Open MPI's", () => {
    const torchrun = {
      RANK: '2',
      WORLD_SIZE: '3',
      LOCAL_RANK: '0',
      GROUP_RANK: '2',
      MASTER_ADDR: 'head',
      MASTER_PORT: '1234',
    };
    expect(launcherEnv({ ...slurmTask5, ...ompiRank3, ...torchrun })).toEqual({
      launcher: 'torchrun',
      rank: 2,
      worldSize: 3,
      localRank: 0,
      nodeRank: 2,
      masterAddr: 'head',
      masterPort: 1234,
    });
  });

  it('says none when no launcher set anything', () => {
    expect(launcherEnv({ PATH: '/usr/bin' })).toEqual({ launcher: 'none' });
  });

  it('refuses a malformed variable, naming it', () => {
    expect(() => launcherEnv({ ...slurmTask5, SLURM_PROCID: 'x' })).toThrow(/SLURM_PROCID/);
    expect(() => launcherEnv({ ...ompiRank3, OMPI_COMM_WORLD_SIZE: '-1' })).toThrow(/OMPI_COMM_WORLD_SIZE/);
    expect(() => launcherEnv({ MASTER_PORT: '29500x' })).toThrow(InvalidArgumentError);
  });
});

describe('launcherNode: gpugroup run started once per node', () => {
  const slurmNode1 = {
    ...slurmTask5,
    SLURM_NTASKS: '2',
    SLURM_STEP_NUM_TASKS: '2',
    SLURM_NTASKS_PER_NODE: '1',
    SLURM_PROCID: '1',
    SLURM_LOCALID: '0',
  };

  it('by srun --ntasks-per-node=1: node index, node count, first host', () => {
    expect(launcherNode(slurmNode1)).toEqual({ nodeRank: 1, nnodes: 2, masterAddr: 'gpu07' });
  });

  it('by mpirun --npernode 1: node index and count, MASTER_ADDR', () => {
    const env = { ...ompiRank3, OMPI_COMM_WORLD_LOCAL_SIZE: '1', OMPI_COMM_WORLD_LOCAL_RANK: '0', MASTER_ADDR: 'n0' };
    expect(launcherNode(env)).toEqual({ nodeRank: 3, nnodes: 4, masterAddr: 'n0' });
  });

  it('not with several tasks per node, nor without a scheduler', () => {
    expect(launcherNode(slurmTask5)).toBeUndefined();
    expect(launcherNode(ompiRank3)).toBeUndefined();
    expect(launcherNode({})).toBeUndefined();
  });

  it('fills in --nnodes, --node-rank and --master-addr; flags still win', () => {
    const parsed = parseRunArgs(['--nproc-per-node', '4', 'train.mjs'], slurmNode1);
    expect((parsed as { options: object }).options).toMatchObject({
      nnodes: 2,
      nodeRank: 1,
      masterAddr: 'gpu07',
      masterPort: 29500,
    });
    const flags = parseRunArgs(['--nnodes', '1', '--master-addr', 'me', 'train.mjs'], slurmNode1);
    expect((flags as { options: object }).options).toMatchObject({
      nnodes: 1,
      nodeRank: 0,
      masterAddr: 'me',
      masterPort: null,
    });
    expect((parseRunArgs(['--standalone', 'train.mjs'], slurmNode1) as { options: object }).options).toMatchObject({
      nnodes: 1,
      nodeRank: 0,
    });
  });
});

describe('an SPMD job started with a scheduler’s variables only (CPU backend, 2 ranks)', () => {
  const fixture = 'test/parallel/fixtures/spmd-allreduce.ts';
  const noTorchrun = { RANK: '', WORLD_SIZE: '', LOCAL_RANK: '', MASTER_ADDR: '', MASTER_PORT: '' };

  async function job(envOf: (rank: number, port: number) => Record<string, string>) {
    const port = await freePort();
    const runs = await Promise.all(
      [0, 1].map((r) => runNode(['--import', 'tsx', fixture], 40_000, { ...noTorchrun, ...envOf(r, port) })),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    return runs.flatMap((r) => jsonLines(r.stdout)).sort((a, b) => Number(a.rank) - Number(b.rank));
  }

  it('as srun sets them: ranks from SLURM_PROCID, the store on the first host of SLURM_JOB_NODELIST', async () => {
    const out = await job((r, port) => ({
      SLURM_JOB_NODELIST: 'localhost',
      SLURM_NNODES: '1',
      SLURM_NTASKS: '2',
      SLURM_PROCID: String(r),
      SLURM_LOCALID: String(r),
      SLURM_NODEID: '0',
      MASTER_PORT: String(port),
    }));
    expect(out).toEqual([
      { rank: 0, worldSize: 2, localRank: 0, sum: 3 },
      { rank: 1, worldSize: 2, localRank: 1, sum: 3 },
    ]);
  });

  it('as mpirun sets them: ranks from OMPI_COMM_WORLD_RANK', async () => {
    const out = await job((r, port) => ({
      OMPI_COMM_WORLD_RANK: String(r),
      OMPI_COMM_WORLD_SIZE: '2',
      OMPI_COMM_WORLD_LOCAL_RANK: String(r),
      OMPI_COMM_WORLD_LOCAL_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
    }));
    expect(out.map((o) => [o.rank, o.sum])).toEqual([
      [0, 3],
      [1, 3],
    ]);
  });
});
