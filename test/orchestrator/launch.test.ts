import { describe, expect, it } from 'vitest';
import { GroupClosedError, InvalidArgumentError, RemoteError } from '../../src/errors.ts';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { MODES, basicWorker, launch } from '../helpers.ts';

describe.each(MODES)('launchGroup in %s mode', (mode) => {
  it('calls every rank and returns results in rank order', async () => {
    const group = await launch({ mode });
    expect(group.worldSize).toBe(4);
    expect(group.ranks).toEqual([0, 1, 2, 3]);
    const who = await group.callAll<{
      rank: number;
      worldSize: number;
      localRank: number;
      device: string;
      backend: string;
      pid: number;
    }>('whoami');
    expect(who.map((w) => w.rank)).toEqual([0, 1, 2, 3]);
    expect(who.every((w) => w.worldSize === 4 && w.device === 'cpu' && w.backend === 'cpu')).toBe(true);
    expect(who.map((w) => w.localRank)).toEqual([0, 1, 2, 3]);
    const pids = new Set(who.map((w) => w.pid));
    expect(pids.size).toBe(mode === 'process' ? 4 : 1);
    expect(await group.call(2, 'echo', 1, 'two', { three: [3n] })).toEqual([1, 'two', { three: [3n] }]);
  });

  it('ranks share the world store group before the first call', async () => {
    const group = await launch({ mode });
    expect(await group.callAll('gatherRanks')).toEqual(Array(4).fill([0, 1, 2, 3]));
    expect(await group.callAll('broadcastSecret', 2)).toEqual(Array(4).fill('secret from 2'));
    expect(await group.callAll('allReduceRank')).toEqual(Array(4).fill([10, 10, 10, 10]));
  });

  it('a rank that throws rejects that call only, with the error rebuilt', async () => {
    const group = await launch({ mode });
    const err = (await group.call(1, 'throwTyped', 'bad value').catch((e) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.rank).toBe(1);
    expect(err.remoteName).toBe('RangeError');
    expect(err.message).toContain('bad value');
    expect(err.stack).toContain('basic-worker.ts');
    expect(await group.call(1, 'echo', 'still fine')).toEqual(['still fine']);
  });

  it('an unknown function is a clear error listing the exports', async () => {
    const group = await launch({ mode, worldSize: 1 });
    const err = (await group.call(0, 'nope').catch((e) => e)) as InvalidArgumentError;
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/no function 'nope'.*whoami/);
  });

  it('shutdown is idempotent and later calls reject', async () => {
    const group = await launch({ mode, worldSize: 2 });
    await Promise.all([group.shutdown(), group.shutdown()]);
    await expect(group.call(0, 'whoami')).rejects.toBeInstanceOf(GroupClosedError);
  });
});

describe('launchGroup options', () => {
  it.each([
    [{ worldSize: 2, devices: [0, 0] }, 'devices', /cuda:0 is given to two ranks/],
    [{ worldSize: 2, devices: [0, 0], shareDevices: true, mode: 'thread' }, 'shareDevices', /needs mode 'process'/],
    [{ worldSize: 2, shareDevices: 'yes' }, 'shareDevices', /a boolean/],
    [{ worldSize: 0 }, 'worldSize', /positive integer/],
    [{ worldSize: 2, mode: 'fiber' }, 'mode', /'process' or 'thread'/],
    [{ worldSize: 2, backend: 'mpi' }, 'backend', /'nccl', 'cpu' or 'auto'/],
    [{ worldSize: 4, tensorParallelSize: 3 }, 'tensorParallelSize', /not divisible/],
    [{ worldSize: 2, worker: '/nowhere/worker.ts' }, 'worker', /no such module/],
    [{ worldSize: 4, nnodes: 2 }, 'masterPort', /fixed masterPort/],
    [{ worldSize: 2, masterAddr: '' }, 'masterAddr', /host name or address/],
    [{ worldSize: 2, env: { A: 1 } }, 'env', /string values/],
    [{ worldSize: 2, timeoutMs: 1.5 }, 'timeoutMs', /positive integer/],
    [{ worldSize: 4, nnodes: 2, nodeRank: 2, masterPort: 29500 }, 'nodeRank', /out of range/],
  ])('rejects %j naming %s, before starting anything', async (opts, argument, message) => {
    const err = await launchGroup({ worker: basicWorker, ...(opts as object) } as never).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe(argument);
    expect(err.message).toMatch(message);
  });
});
