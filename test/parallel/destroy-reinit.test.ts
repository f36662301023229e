// destroyModelParallel (GroupCoordinator.destroy) and initializeModelParallel again, as
// test/gpu/close-reopen.test.ts does on real NCCL: on the CPU backend with real values,
// and on the stand-in NCCL library with the TP all-reduce still running at the destroy.
import { afterEach, describe, expect, it } from 'vitest';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import { MODEL_PARALLEL_TWICE, callAllReported } from '../helpers.ts';
import { stubHooks, useStubNative } from '../stub-native.ts';

const closeWorker = new URL('../gpu/fixtures/close-reopen-worker.ts', import.meta.url);
const reinitWorker = new URL('../fixtures/reinit-worker.ts', import.meta.url);
const stub = useStubNative();
if (stub) process.env.GPUGROUP_STUB_GPUS = '2';

let group: Group | null = null;
afterEach(async () => {
  if (stub) stubHooks().setBusy(false);
  await group?.shutdown();
  group = null;
});

describe.each(['thread', 'process'] as const)('destroy and rebuild the model-parallel groups (cpu, %s)', (mode) => {
  it('TP all-reduce, destroy, tensors read back, new TP groups all-reduce, destroy, init, world all-reduce', async () => {
    group = await launchGroup({ worldSize: 2, worker: closeWorker, backend: 'cpu', mode, tensorParallelSize: 2 });
    const out = await callAllReported(group, 'modelParallelTwice');
    expect(out).toEqual(MODEL_PARALLEL_TWICE);
  }, 60_000);
});

describe.skipIf(!stub)('destroyModelParallel with the TP all-reduce still running (stand-in NCCL)', () => {
  it('waits for it instead of ending it: its output and input read back, and new TP groups work', async () => {
    group = await launchGroup({
      worldSize: 2,
      worker: reinitWorker,
      backend: 'nccl',
      mode: 'thread',
      tensorParallelSize: 2,
      timeoutMs: 30_000,
    });
    // Thread ranks share this process's stand-in: from here its streams say "not done".
    stubHooks().setBusy(true);
    const out = await callAllReported(group, 'destroyWhileRunning', 200);
    expect(out).toEqual(
      [1, 2].map((own) => ({ waited: true, afterDestroy: { x: [own, own, own, own], first: 4 }, second: 4 })),
    );
  }, 60_000);
});
