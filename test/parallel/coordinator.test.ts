import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import { groupLayout } from '../../src/parallel/index.ts';
import { MODES } from '../helpers.ts';

const worker = new URL('../fixtures/coordinator-worker.ts', import.meta.url);
type Described = {
  ranks: number[];
  worldSize: number;
  rankInGroup: number;
  firstRank: number;
  lastRank: number;
  isFirstRank: boolean;
  isLastRank: boolean;
  nextRank: number;
  prevRank: number;
  uniqueName: string;
};

function expectedDict(seed: number) {
  return {
    hidden: { tensor: [2, 2], dtype: 'float32', device: 'cpu', values: [seed, seed + 1, seed + 2, seed + 3] },
    empty: { tensor: [0, 3], dtype: 'int64', device: 'cpu', values: [] },
    name: `step-${seed}`,
    nested: { a: [1, 'two', { three: 3 }], ok: true, none: null },
    positions: { tensor: [3], dtype: 'int32', device: 'cpu', values: [seed, 7, 9] },
    flag: false,
    count: 42,
  };
}

describe.each(MODES)('GroupCoordinator on the CPU backend, %s mode', (mode) => {
  describe.each([
    ['TP=2', { tensorParallelSize: 2, pipelineParallelSize: 1 }],
    ['PP=2', { tensorParallelSize: 1, pipelineParallelSize: 2 }],
    ['TP=2 x PP=2', { tensorParallelSize: 2, pipelineParallelSize: 2 }],
  ] as const)('%s at world 4', (_name, sizes) => {
    let group: Group;
    beforeAll(async () => {
      group = await launchGroup({ worldSize: 4, worker, backend: 'cpu', mode, timeoutMs: 30_000, ...sizes });
    });
    afterAll(() => group.shutdown());

    it("every rank's groups follow vLLM's layout", async () => {
      const layout = groupLayout(4, {
        ...sizes,
        dataParallelSize: 4 / (sizes.tensorParallelSize * sizes.pipelineParallelSize),
      });
      const out = await group.callAll<Record<'world' | 'tp' | 'pp' | 'dp' | 'ep', Described>>('groups');
      out.forEach((g, rank) => {
        for (const kind of ['tp', 'pp', 'dp', 'ep'] as const) {
          const ranks = layout[kind].find((l) => l.includes(rank))!;
          const i = ranks.indexOf(rank);
          expect(g[kind]).toMatchObject({
            ranks,
            worldSize: ranks.length,
            rankInGroup: i,
            firstRank: ranks[0],
            lastRank: ranks.at(-1),
            isFirstRank: i === 0,
            isLastRank: i === ranks.length - 1,
            nextRank: ranks[(i + 1) % ranks.length],
            prevRank: ranks[(i - 1 + ranks.length) % ranks.length],
          });
          expect(g[kind].uniqueName).toBe(`${kind}:0`);
        }
        expect(g.world.ranks).toEqual([0, 1, 2, 3]);
      });
    });

    it('broadcastTensorDict from the last rank of each group: tensors, empty tensors, strings, nested values', async () => {
      for (const kind of ['world', 'tp', 'pp'] as const) {
        const out = await group.callAll<{ sameObject: boolean; dict: unknown }>(
          'broadcastDict',
          kind,
          kind === 'world' ? 3 : kind === 'tp' ? sizes.tensorParallelSize - 1 : sizes.pipelineParallelSize - 1,
        );
        const described = await group.callAll<Record<string, Described>>('groups');
        out.forEach((r, rank) => {
          const g = described[rank][kind];
          const srcRank = g.ranks[g.worldSize - 1];
          expect(r.dict).toEqual(expectedDict(100 + srcRank));
          expect(r.sameObject).toBe(rank === srcRank);
        });
      }
    });

    it(
      'broadcastTensorDict of mixed dtypes, 0-d, empty, non-contiguous and large tensors from rank 1; received ' +
        'tensors are freed one by one',
      async () => {
        expect(await group.callAll<string[]>('mixedDict', 1, 3)).toEqual([[], [], [], []]);
      },
    );

    it('send/recv tensor dict along the pipeline', async () => {
      if (sizes.pipelineParallelSize === 1) return;
      const out = await group.callAll<{ sent?: unknown; received?: unknown }>('pipelineDict');
      const described = await group.callAll<Record<string, Described>>('groups');
      out.forEach((r, rank) => {
        const pp = described[rank].pp;
        if (pp.isFirstRank) expect(r.sent).toBeNull();
        else expect(r.received).toEqual(expectedDict(pp.ranks[0]));
      });
    });

    it('send/recv tensor dict with the TP group as the all-gather group (slices, then all-gather)', async () => {
      if (sizes.pipelineParallelSize === 1 || sizes.tensorParallelSize === 1) return;
      const out = await group.callAll<{ sent?: unknown; received?: Record<string, unknown> }>('pipelineDictAllGather');
      for (const rank of [2, 3]) {
        expect(out[rank].received).toEqual({
          hidden: { tensor: [3, 4], dtype: 'float32', device: 'cpu', values: Array.from({ length: 12 }, (_, i) => i) },
          odd: { tensor: [3], dtype: 'float32', device: 'cpu', values: [1, 2, 3] },
          tag: 'x',
        });
      }
      expect(out[0].sent).toBeNull();
    });

    it('allReduce within the TP group', async () => {
      const out = await group.callAll<number[]>('tpAllReduce');
      const layout = groupLayout(4, { tensorParallelSize: sizes.tensorParallelSize });
      out.forEach((r, rank) => {
        const tp = layout.tp.find((l) => l.includes(rank))!;
        expect(r).toEqual([tp.reduce((a, b) => a + b, 0), tp.length]);
      });
    });
  });

  it('objects: broadcast from rank 2, point to point, barrier', async () => {
    const group = await launchGroup({ worldSize: 4, worker, backend: 'cpu', mode, timeoutMs: 30_000 });
    try {
      const out = await group.callAll<{ fromTwo: unknown; received: unknown }>('objects');
      for (const r of out) expect(r.fromTwo).toEqual({ from: 2, big: 10n ** 20n });
      expect(out[3].received).toEqual({ hello: 'rank 3' });
    } finally {
      await group.shutdown();
    }
  });

  it("vLLM's world-size-1 behaviour for every op", async () => {
    const group = await launchGroup({ worldSize: 2, worker, backend: 'cpu', mode, timeoutMs: 30_000 });
    try {
      const [r] = await Promise.all([
        group.call<Record<string, unknown>>(0, 'worldSizeOne'),
        group.call(1, 'worldSizeOne'),
      ]);
      expect(r).toMatchObject({
        worldSize: 1,
        allReduceSame: true,
        allGatherSame: true,
        reduceScatterSame: true,
        gatherSame: true,
        broadcastSame: true,
        broadcastObject: { k: 1 },
        broadcastDictSame: true,
        sendDictSame: true,
        recvDict: null,
      });
      for (const op of ['send', 'recv', 'allGatherv', 'reduceScatterv'])
        expect((r.errors as Record<string, string>)[op]).toMatch(/No device communicator found/);
    } finally {
      await group.shutdown();
    }
  });
});

describe('graph capture on the CPU backend', () => {
  it('is refused with a clear error', async () => {
    const group = await launchGroup({
      worldSize: 2,
      worker: new URL('../fixtures/graph-worker.ts', import.meta.url),
      backend: 'cpu',
      mode: 'thread',
      timeoutMs: 30_000,
    });
    try {
      expect(await group.callAll('captureOnCpu')).toEqual(
        Array(2).fill(
          'InvalidArgumentError: backend: graph capture needs CUDA: launch the group with the NCCL backend',
        ),
      );
    } finally {
      await group.shutdown();
    }
  });
});
