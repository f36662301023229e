import { describe, expect, it } from 'vitest';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { TcpStoreServer } from '../../src/store/index.ts';
import { MODES, alive, basicWorker, portFree, shmLeftovers } from '../helpers.ts';
import { childPids, resourceCounts } from './procs.ts';

describe.each(MODES)('lifecycle in %s mode', (mode) => {
  it('50 launch/shutdown cycles leave no process, handle, port or shared memory behind', async () => {
    await new Promise((r) => setTimeout(r, 50));
    const before = resourceCounts();
    const shmBefore = shmLeftovers().length;
    const pids: number[] = [];
    const ports: number[] = [];
    for (let i = 0; i < 50; i++) {
      const group = await launchGroup({ worldSize: 2, worker: basicWorker, backend: 'cpu', mode, timeoutMs: 20_000 });
      if (i % 10 === 0)
        expect(await group.callAll('allReduceRank')).toEqual([
          [3, 3, 3, 3],
          [3, 3, 3, 3],
        ]);
      pids.push(...group.pids);
      ports.push(group.storeAddress.port);
      await group.shutdown();
    }
    if (mode === 'process') expect(pids.filter(alive)).toEqual([]);
    expect(childPids()).toEqual([]);
    // Handles finish closing on the next turns of the loop.
    await new Promise((r) => setTimeout(r, 50));
    expect(resourceCounts()).toEqual(before);
    for (const port of ports.slice(-5)) expect(await portFree(port)).toBe(true);
    expect(shmLeftovers().length).toBe(shmBefore);
  }, 120_000);
});

describe('multi-node shape', () => {
  it.each(MODES)(
    'two coordinators on loopback form one world of 4 (%s mode)',
    async (mode) => {
      const probe = await TcpStoreServer.listen();
      const masterPort = probe.port;
      await probe.close();
      const common = {
        worker: basicWorker,
        backend: 'cpu' as const,
        mode,
        nnodes: 2,
        nprocPerNode: 2,
        masterAddr: '127.0.0.1',
        masterPort,
        timeoutMs: 20_000,
      };
      const [node0, node1] = await Promise.all([
        launchGroup({ ...common, nodeRank: 0 }),
        launchGroup({ ...common, nodeRank: 1 }),
      ]);
      try {
        expect(node0.ranks).toEqual([0, 1]);
        expect(node1.ranks).toEqual([2, 3]);
        expect(node0.worldSize).toBe(4);
        const [a, b] = await Promise.all([node0.callAll('gatherRanks'), node1.callAll('gatherRanks')]);
        expect([...a, ...b]).toEqual(Array(4).fill([0, 1, 2, 3]));
        const [x, y] = await Promise.all([node0.callAll('allReduceRank'), node1.callAll('allReduceRank')]);
        expect([...x, ...y]).toEqual(Array(4).fill([10, 10, 10, 10]));
        const who = await node1.call<{ localRank: number }>(3, 'whoami');
        expect(who.localRank).toBe(1);
      } finally {
        await Promise.all([node1.shutdown(), node0.shutdown()]);
      }
    },
    30_000,
  );
});
