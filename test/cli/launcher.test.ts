// `gpugroup run` on the CPU backend: SPMD ranks started with torchrun's variables, a
// failing rank named and the others stopped, signals forwarded, and a two-node rehearsal.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseRunArgs } from '../../src/cli/index.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { freePort } from '../../src/store/index.ts';
import { alive, eventually } from '../helpers.ts';
import { stubNativeEnv } from '../stub-native.ts';
import { gpugroupBin, jsonLines, repoRoot, runNode, startNode } from './command.ts';

const script = 'test/cli/fixtures/spmd-allreduce.ts';

interface RankLine {
  rank: number;
  worldSize: number;
  device: string;
  sum: number;
  ok: boolean;
  pid: number;
  env: Record<string, string>;
}

describe('gpugroup run', () => {
  it('starts 2 ranks with torchrun variables; they all-reduce on the CPU backend', async () => {
    const r = await runNode([gpugroupBin, 'run', '--nproc-per-node', '2', '--backend', 'cpu', script], 20_000);
    expect(r.stderr).not.toMatch(/FAILED/);
    expect(r.code).toBe(0);
    const lines = jsonLines<RankLine>(r.stdout).sort((a, b) => a.rank - b.rank);
    expect(lines.map((l) => [l.rank, l.worldSize, l.device, l.sum, l.ok])).toEqual([
      [0, 2, 'cpu', 3, true],
      [1, 2, 'cpu', 3, true],
    ]);
    const port = lines[0].env.MASTER_PORT;
    expect(Number(port)).toBeGreaterThan(0);
    lines.forEach((l, i) => {
      expect(l.env).toEqual({
        RANK: String(i),
        WORLD_SIZE: '2',
        LOCAL_RANK: String(i),
        LOCAL_WORLD_SIZE: '2',
        NODE_RANK: '0',
        GROUP_RANK: '0',
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: port,
        GPUGROUP_NODE_ID: '0',
        GPUGROUP_BACKEND: 'cpu',
      });
    });
  });

  it('a script that never calls destroyDistributedEnvironment() ends; the launcher returns 0', async () => {
    const r = await runNode(
      [
        gpugroupBin,
        'run',
        '--nproc-per-node',
        '2',
        '--backend',
        'cpu',
        'test/cli/fixtures/spmd-no-teardown.ts',
        '--dict',
      ],
      20_000,
    );
    const ended = Date.now();
    expect(r.stderr).not.toMatch(/FAILED|teardown/);
    expect(r.code).toBe(0);
    const lines = jsonLines<{ rank: number; sum: number; dict: number[]; end: number; pid: number }>(r.stdout);
    expect(lines.map((l) => [l.rank, l.sum, l.dict]).sort()).toEqual([
      [0, 3, [4, 5]],
      [1, 3, [4, 5]],
    ]);
    expect(ended - Math.max(...lines.map((l) => l.end))).toBeLessThan(3_000);
    expect(lines.map((l) => l.pid).filter(alive)).toEqual([]);
  });

  it('without teardown, rank 0 serves the store until the other ranks are done: a key read 1.5 s after rank 0 finished', async () => {
    const r = await runNode(
      [
        gpugroupBin,
        'run',
        '--nproc-per-node',
        '2',
        '--backend',
        'cpu',
        'test/cli/fixtures/spmd-no-teardown.ts',
        '--late-read',
      ],
      20_000,
    );
    expect(r.stderr).not.toMatch(/FAILED|teardown/);
    expect(r.code).toBe(0);
    const lines = jsonLines<{ rank: number; late: string | null; end: number }>(r.stdout).sort(
      (a, b) => a.rank - b.rank,
    );
    expect(lines.map((l) => [l.rank, l.late])).toEqual([
      [0, null],
      [1, 'from rank 0'],
    ]);
    expect(lines[1].end - lines[0].end).toBeGreaterThanOrEqual(1_400);
  });

  it('the same on the NCCL backend (stand-in library): the store thread, communicators and queues let go', async (t) => {
    const env = stubNativeEnv(2);
    if (!env) return t.skip();
    const r = await runNode(
      [
        gpugroupBin,
        'run',
        '--nproc-per-node',
        '2',
        '--backend',
        'nccl',
        'test/cli/fixtures/spmd-no-teardown.ts',
        '--dict',
        '--late-read',
      ],
      30_000,
      env,
    );
    expect(r.stderr).not.toMatch(/FAILED|teardown/);
    expect(r.code).toBe(0);
    // The stand-in moves no data between ranks: only what rank 0 holds and the store are checked.
    const lines = jsonLines<{ rank: number; late: string | null; dict: number[] }>(r.stdout).sort(
      (a, b) => a.rank - b.rank,
    );
    expect(lines.map((l) => l.rank)).toEqual([0, 1]);
    expect(lines[0].dict).toEqual([4, 5]);
    expect(lines[1].late).toBe('from rank 0');
  });

  it('a failing rank: exit code 3, the rank named, the other rank stopped within seconds', async () => {
    const r = await runNode(
      [gpugroupBin, 'run', '--nproc-per-node', '2', '--backend', 'cpu', script, '--fail-rank', '1'],
      20_000,
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/gpugroup run: rank 1 exited with code 3; stopping the other 1 rank/);
    expect(r.stderr).toMatch(
      /FAILED: rank 1 \(local rank 1 on node 0, pid \d+\) exited with code 3; stopped: rank 0 was killed by SIGTERM/,
    );
    const waiting = jsonLines<{ rank: number; waiting?: number }>(r.stdout).find((l) => l.waiting !== undefined);
    expect(waiting?.rank).toBe(0);
    expect(alive(waiting!.waiting!)).toBe(false);
    expect(r.ms).toBeLessThan(10_000);
  });

  it('a rank that ignores SIGTERM is SIGKILLed after the grace', async () => {
    const r = await runNode(
      [
        gpugroupBin,
        'run',
        '--nproc-per-node',
        '2',
        '--backend',
        'cpu',
        '--grace-ms',
        '500',
        script,
        '--fail-rank',
        '1',
        '--ignore-sigterm',
      ],
      20_000,
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/rank 0: ignoring SIGTERM/);
    expect(r.stderr).toMatch(/rank 0 still running after 500 ms; sending SIGKILL/);
    expect(r.stderr).toMatch(/stopped: rank 0 was killed by SIGKILL/);
  });

  it('SIGINT (Ctrl-C) is forwarded to every rank; exit code 130', async () => {
    const cmd = startNode([gpugroupBin, 'run', '--nproc-per-node', '2', '--backend', 'cpu', script, '--hang'], 20_000);
    await eventually(
      () => jsonLines(cmd.stdout()).filter((l) => l.waiting !== undefined).length === 2,
      15_000,
      'both ranks waiting',
    );
    const pids = jsonLines<{ waiting?: number }>(cmd.stdout()).flatMap((l) => (l.waiting ? [l.waiting] : []));
    const t0 = performance.now();
    cmd.child.kill('SIGINT');
    const r = await cmd.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/got SIGINT; forwarding it to 2 rank/);
    expect(pids.filter(alive)).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('two nodes on one machine: 2 launchers × 2 ranks meet over loopback (node 0 hosts the store)', async () => {
    const port = String(await freePort());
    const node = (n: number) =>
      startNode(
        [
          gpugroupBin,
          'run',
          '--nnodes',
          '2',
          '--node-rank',
          String(n),
          '--nproc-per-node',
          '2',
          '--master-port',
          port,
          '--backend',
          'cpu',
          script,
        ],
        30_000,
      );
    // Node 1 first: its ranks wait for the store that rank 0 (node 0) serves.
    const n1 = node(1);
    const n0 = node(0);
    const [r0, r1] = await Promise.all([n0.done, n1.done]);
    expect([r0.code, r1.code]).toEqual([0, 0]);
    const lines = [...jsonLines<RankLine>(r0.stdout), ...jsonLines<RankLine>(r1.stdout)].sort(
      (a, b) => a.rank - b.rank,
    );
    expect(lines.map((l) => [l.rank, l.sum, l.ok])).toEqual([
      [0, 10, true],
      [1, 10, true],
      [2, 10, true],
      [3, 10, true],
    ]);
    expect(
      lines.map((l) => [
        l.env.RANK,
        l.env.LOCAL_RANK,
        l.env.NODE_RANK,
        l.env.GPUGROUP_NODE_ID,
        l.env.WORLD_SIZE,
        l.env.MASTER_PORT,
      ]),
    ).toEqual([
      ['0', '0', '0', '0', '4', port],
      ['1', '1', '0', '0', '4', port],
      ['2', '0', '1', '1', '4', port],
      ['3', '1', '1', '1', '4', port],
    ]);
  });

  it('a rank failing on node 1 stops node 0 too: its launcher exits 1 naming the remote rank, within seconds', async () => {
    const port = String(await freePort());
    const node = (n: number) =>
      startNode(
        [
          gpugroupBin,
          'run',
          '--nnodes',
          '2',
          '--node-rank',
          String(n),
          '--nproc-per-node',
          '2',
          '--master-port',
          port,
          '--backend',
          'cpu',
          script,
          '--fail-rank',
          '3',
        ],
        30_000,
      );
    const n1 = node(1);
    const n0 = node(0);
    const [r0, r1] = await Promise.all([n0.done, n1.done]);
    expect(r1.code).toBe(3);
    expect(r1.stderr).toMatch(/FAILED: rank 3/);
    expect(r0.code).toBe(1);
    expect(r0.stderr).toMatch(/another node failed: rank 3 \(node 1, local rank 1\) exited with code 3/);
    // The others wait in a barrier that would last the scripts' 30 s store deadline.
    expect(r0.ms).toBeLessThan(15_000);
    const waiting = jsonLines<{ waiting?: number }>(r0.stdout).flatMap((l) => (l.waiting ? [l.waiting] : []));
    expect(waiting).toHaveLength(2);
    for (const pid of waiting) expect(alive(pid)).toBe(false);
  }, 40_000);

  it('--help, and command-line mistakes exit 2 naming the option, before starting anything', async () => {
    const help = await runNode([gpugroupBin, 'run', '--help'], 10_000);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: gpugroup run \[options\] script.ts/);
    const top = await runNode([gpugroupBin, '--help'], 10_000);
    expect([top.code, top.stdout.includes('run [options] script.ts')]).toEqual([0, true]);
    const bad = await runNode([gpugroupBin, 'run', '--nproc-per-node', 'two', script], 10_000);
    expect([bad.code, bad.stderr.trim()]).toEqual([
      2,
      "gpugroup run: --nproc-per-node: expected an integer ≥ 1, got 'two'",
    ]);
    const missing = await runNode([gpugroupBin, 'run', 'no-such-script.ts'], 10_000);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/script: no such file: .*no-such-script\.ts/);
    const unknown = await runNode([gpugroupBin, 'launch'], 10_000);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'launch'/);
  });

  it("npx resolves the package's own bin (no install, no network)", async () => {
    // npm exec finds the bin of the project it runs in when the name matches package.json's.
    const { stdout } = await promisify(execFile)('npx', ['--offline', 'gpugroup', '--version'], {
      cwd: repoRoot,
      timeout: 20_000,
    });
    expect(stdout.trim()).toBe(
      JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version,
    );
  });
});

describe('parseRunArgs', () => {
  it('takes options up to the script; everything after it belongs to the script', () => {
    expect(
      parseRunArgs([
        '--nproc_per_node=4',
        '--nnodes',
        '2',
        '--node-rank=1',
        '--master-addr',
        '10.0.0.1',
        'train.ts',
        '--nproc-per-node',
        '8',
        '-x',
      ]),
    ).toEqual({
      help: false,
      options: {
        nprocPerNode: 4,
        nnodes: 2,
        nodeRank: 1,
        masterAddr: '10.0.0.1',
        masterPort: 29500,
        backend: 'auto',
        graceMs: 5000,
        script: 'train.ts',
        scriptArgs: ['--nproc-per-node', '8', '-x'],
      },
    });
    expect(parseRunArgs(['--standalone', '--nproc-per-node', 'gpu', '--', '--weird-name.ts'])).toMatchObject({
      options: { nprocPerNode: 'gpu', masterPort: null, script: '--weird-name.ts' },
    });
  });

  it.each([
    [['--nnodes', '2', '--node-rank', '2', 's.ts'], '--node-rank', /out of range \[0, 2\)/],
    [['--backend', 'mpi', 's.ts'], '--backend', /cpu, nccl or auto/],
    [['--master-port', '70000', 's.ts'], '--master-port', /\[1, 65535\]/],
    [['--nproc-per-node'], '--nproc-per-node', /needs a value/],
    [['--frobnicate', 's.ts'], '--frobnicate', /unknown option/],
    [['--nproc-per-node', '2'], 'script', /no script given/],
  ])('rejects %j naming %s', (argv, argument, message) => {
    const err = (() => {
      try {
        parseRunArgs(argv);
      } catch (e) {
        return e;
      }
    })() as InvalidArgumentError;
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe(argument);
    expect(err.message).toMatch(message);
  });
});
