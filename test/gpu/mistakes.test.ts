// On NCCL: a collective only some ranks enter ends in CollectiveTimeoutError from the
// watchdog before the call's deadline; with one GPU, launchGroup's 'auto' backend is
// nccl at a world of 1. On a one-GPU machine the two-rank case needs
// GPUGROUP_TEST_SHARED_RANKS=2 (ranks sharing the GPU).
import { describe, expect, it } from 'vitest';
import { CallTimeoutError, CollectiveTimeoutError } from '../../src/errors.ts';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { gpuModes, gpus, placement, world } from './world.ts';

const worker = new URL('../fixtures/mistakes-worker.ts', import.meta.url);
const basicWorker = new URL('../fixtures/basic-worker.ts', import.meta.url);

describe.skipIf(gpus < 1)('one GPU', () => {
  it("'auto' launches a world of 1 on nccl, on cuda:0", async () => {
    const group = await launchGroup({ worker: basicWorker, timeoutMs: 60_000 });
    try {
      expect(group.backend).toBe('nccl');
      expect(await group.callAll('whoami')).toMatchObject([{ rank: 0, device: 'cuda:0', backend: 'nccl' }]);
      expect(await group.callAll('allReduceRank')).toEqual([[1, 1, 1, 1]]);
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});

describe.skipIf(world < 2).each(gpuModes)('a collective only rank 0 enters, on NCCL (%s ranks)', (mode) => {
  it('ends in CollectiveTimeoutError with the flight recorder before the call deadline', async () => {
    const group = await launchGroup({ worldSize: 2, worker, backend: 'nccl', mode, timeoutMs: 6_000, ...placement(2) });
    try {
      const t0 = performance.now();
      const out = await Promise.allSettled([group.call(0, 'allReduceOn', [0]), group.call(1, 'allReduceOn', [0])]);
      const took = performance.now() - t0;
      expect(out[1]).toEqual({ status: 'fulfilled', value: 'skipped' });
      const err = (out[0] as PromiseRejectedResult).reason as CollectiveTimeoutError;
      expect(err, String(err)).not.toBeInstanceOf(CallTimeoutError);
      expect(err, String(err)).toBeInstanceOf(CollectiveTimeoutError);
      expect(err.op).toBe('all_reduce');
      expect(err.message).toMatch(/Last ops:\n.*all_reduce float32×4 pending/s);
      expect(took).toBeLessThan(6_000);
    } finally {
      await group.shutdown();
    }
  }, 120_000);
});
