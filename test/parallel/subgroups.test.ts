import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { useStubNative } from '../stub-native.ts';

// NCCL code paths on the stand-in library (bench/stub-native): communicators are made and
// split for real as far as gpugroup goes; the stand-in moves no data between ranks.
const stub = useStubNative();
if (stub) process.env.GPUGROUP_STUB_GPUS = '4';
const worker = new URL('../fixtures/subgroups-worker.ts', import.meta.url);
// Thread ranks share this process's copy of the stand-in: its count of NCCL inits.
const inits = stub
  ? (koffi.load(process.env.GPUGROUP_NCCL_SO_PATH!).func('int gpugroupStubInits(void)') as () => number)
  : () => 0;
type Seen = { rankInGroup: number; worldSize: number } | null;

describe.skipIf(!stub).each(['split', 'init'] as const)('NCCL subgroup communicators made by %s', (how) => {
  it('4 ranks, TP 2: tp, dp and ep communicators with their group ranks, none for one-rank pp groups', async () => {
    process.env.GPUGROUP_NCCL_SUBGROUPS = how;
    const initsBefore = inits();
    const group = await launchGroup({
      worldSize: 4,
      worker,
      backend: 'nccl',
      mode: 'thread',
      tensorParallelSize: 2,
      timeoutMs: 30_000,
    });
    try {
      const seen =
        await group.callAll<Record<string, { rankInGroup: number; worldSize: number } | null>>('communicators');
      const brief = seen.map((r) =>
        Object.fromEntries(Object.entries(r).map(([k, c]) => [k, c && [c.rankInGroup, c.worldSize]])),
      );
      // One init per rank for the world; by init, one more per rank for each of tp, dp, ep.
      expect(inits() - initsBefore).toBe(how === 'split' ? 4 : 16);
      expect(brief).toEqual([
        { world: [0, 4], tp: [0, 2], pp: null, dp: [0, 2], ep: [0, 4] },
        { world: [1, 4], tp: [1, 2], pp: null, dp: [0, 2], ep: [1, 4] },
        { world: [2, 4], tp: [0, 2], pp: null, dp: [1, 2], ep: [2, 4] },
        { world: [3, 4], tp: [1, 2], pp: null, dp: [1, 2], ep: [3, 4] },
      ]);
      // A kind whose groups differ in size: every world rank takes part in the split,
      // the ranks of one-rank groups get no communicator.
      const uneven = await group.callAll<Seen>('uneven', { split: how === 'split' });
      expect(uneven.map((c) => c && [c.rankInGroup, c.worldSize])).toEqual([[0, 2], [1, 2], null, null]);
    } finally {
      await group.shutdown();
      delete process.env.GPUGROUP_NCCL_SUBGROUPS;
    }
  }, 60_000);
});
