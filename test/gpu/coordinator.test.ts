import { describe, expect, it } from 'vitest';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { callAllReported } from '../helpers.ts';
import { deviceOf, gpuModes, placement, world } from './world.ts';

const graphWorker = new URL('../fixtures/graph-worker.ts', import.meta.url);
const coordWorker = new URL('../fixtures/coordinator-worker.ts', import.meta.url);

describe.skipIf(world < 2)('GroupCoordinator on NCCL', () => {
  it('broadcastTensorDict mixing device and CPU tensors, and a pipeline send/recv of a dict', async () => {
    const pp = world >= 4 ? 2 : 1;
    const group = await launchGroup({
      worldSize: world,
      worker: coordWorker,
      backend: 'nccl',
      tensorParallelSize: 2,
      pipelineParallelSize: pp,
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      const out = await callAllReported<{
        sameObject: boolean;
        dict: Record<string, { device?: string; values?: number[] }>;
      }>(group, 'broadcastDict', 'world', world - 1);
      out.forEach((r, rank) => {
        expect(r.dict.hidden).toEqual({
          tensor: [2, 2],
          dtype: 'float32',
          device: deviceOf(rank),
          values: [100 + world - 1, 101 + world - 1, 102 + world - 1, 103 + world - 1],
        });
        expect(r.dict.positions).toEqual({
          tensor: [3],
          dtype: 'int32',
          device: 'cpu',
          values: [100 + world - 1, 7, 9],
        });
        expect(r.dict.empty).toMatchObject({ tensor: [0, 3], values: [] });
        expect(r.dict.nested).toEqual({ a: [1, 'two', { three: 3 }], ok: true, none: null });
        expect(r.sameObject).toBe(rank === world - 1);
      });
      if (pp === 2) {
        const piped = await callAllReported<{ sent?: unknown; received?: Record<string, { values?: number[] }> }>(
          group,
          'pipelineDict',
        );
        expect(piped[2].received!.hidden.values).toEqual([0, 1, 2, 3]);
        expect(piped[3].received!.hidden.values).toEqual([1, 2, 3, 4]);
      }
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});

describe.skipIf(world < 2)('broadcastTensorDict of a mixed dict on NCCL', () => {
  it('mixed dtypes, 0-d, empty, non-contiguous, large and CPU tensors from rank 1; received device tensors are freed ' +
    'one by one', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker: coordWorker,
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      expect(await callAllReported<string[]>(group, 'mixedDict', 1, 3)).toEqual(Array(world).fill([]));
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});

describe.skipIf(world < 2).each(gpuModes)('broadcastTensorDict through the message queue on %s ranks', (mode) => {
  it('200 dicts of 8 device tensors from the last rank, every 50th with a 5 MB value past the chunk', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker: coordWorker,
      backend: 'nccl',
      mode,
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      expect(await callAllReported<string[]>(group, 'manyDicts', 200, world - 1)).toEqual(Array(world).fill([]));
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});

describe.skipIf(world < 2)('graph capture on NCCL', () => {
  it('two TP groups all-reducing a different number of times inside one capture, replayed on new inputs', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker: graphWorker,
      backend: 'nccl',
      tensorParallelSize: 2,
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      const out = await group.callAll<{ times: number; first: number[]; second: number[] }>('twoGroupsInOneGraph');
      out.forEach((r, rank) => {
        const base = Math.floor(rank / 2) * 2;
        const sum = base + 1 + base + 2; // ranks base, base+1 hold base+1, base+2
        const expected = sum * 2 ** (r.times - 1); // the second all-reduce doubles
        expect(r.times).toBe(Math.floor(rank / 2) + 1);
        expect(r.first).toEqual([expected, expected, expected, expected]);
        expect(r.second).toEqual(Array(4).fill(expected * 10));
      });
    } finally {
      await group.shutdown();
    }
  }, 120_000);

  it('a captured all-gather and reduce-scatter; 1,000 replays without device memory growth', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker: graphWorker,
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      const out = await group.callAll<{ ag: number[]; agShape: number[]; rs: number[]; rsShape: number[] }>(
        'gatherScatter',
      );
      const total = (world * (world + 1)) / 2;
      out.forEach((r) => {
        expect(r.agShape).toEqual([1, 2 * world]);
        expect(r.ag).toEqual(Array.from({ length: world }, (_, q) => [q, q + 0.5]).flat());
        expect(r.rsShape).toEqual([2, 3]);
        expect(r.rs).toEqual(Array(6).fill(total));
      });
      const mem = await group.callAll<{ before: number; after: number; result: number[] }>('replayMemory');
      for (const m of mem) {
        expect(m.result).toEqual([world * world, world * world]);
        expect(m.before - m.after).toBeLessThanOrEqual(2 << 20);
      }
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});
