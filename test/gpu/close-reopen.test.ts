// Closing is not failing, on real NCCL: a communicator, a weight transfer group, a KV
// pipe and the model-parallel groups closed after their work completed leave the
// caller's stream and tensors usable, and a new one works on the same stream. The
// one-rank communicator runs on any GPU; the rest on 2+ GPUs or the one-GPU rehearsal
// (GPUGROUP_TEST_SHARED_RANKS=2, bench/rehearse-gpu.sh).
import { afterEach, describe, expect, it } from 'vitest';
import { NcclCommunicator } from '../../src/comm/index.ts';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import { StatelessProcessGroup, freePort } from '../../src/store/index.ts';
import { Tensor, currentStream, setDevice } from '../../src/tensor/index.ts';
import { NcclWeightTransferEngine } from '../../src/weights/index.ts';
import { MODEL_PARALLEL_TWICE, callAllReported } from '../helpers.ts';
import { initInfo } from '../weights/helpers.ts';
import { gpus, placement, world } from './world.ts';

const closeWorker = new URL('./fixtures/close-reopen-worker.ts', import.meta.url);
const weightsWorker = new URL('../weights/worker.ts', import.meta.url);
const values = async (t: Tensor): Promise<number[]> => Array.from((await t.toArray()) as Float32Array);

/** callAllReported, each rank's error also logged at once: a run cut at its time limit prints no summary. */
async function callAll<T>(g: Group, fn: string, ...args: unknown[]): Promise<T[]> {
  try {
    return await callAllReported<T>(g, fn, ...args);
  } catch (err) {
    console.error(`close-reopen: ${(err as Error).message}`);
    throw err;
  }
}

describe.skipIf(gpus < 1)('closing an NCCL communicator in this process (one GPU)', () => {
  it('all-reduce, destroy, a new communicator, all-reduce, destroy: every tensor reads back on the same stream', async () => {
    setDevice(0);
    const stream = currentStream();
    const x = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), { device: 'cuda:0' });
    const outs: Tensor[] = [];
    for (const name of ['one-rank-a', 'one-rank-b']) {
      const group = await StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 1 });
      const comm = await NcclCommunicator.create({ group, device: 'cuda:0', groupName: name, singleRankOps: true });
      try {
        outs.push(await comm.allReduce(x));
        await comm.synchronize();
      } finally {
        comm.destroy();
        await group.close();
      }
      expect(await values(outs[outs.length - 1])).toEqual([1, 2, 3, 4]);
    }
    expect(currentStream()).toBe(stream);
    expect(await Promise.all([...outs, x].map(values))).toEqual(Array(3).fill([1, 2, 3, 4]));
    await stream.synchronize(10_000);
  }, 60_000);
});

describe.skipIf(world < 2)('closing and reopening across ranks on NCCL', () => {
  let group: Group | null = null;
  afterEach(async () => {
    await group?.shutdown();
    group = null;
  });

  it('weight transfer: send, close, open a second group, send, then read the trainer tensors on its stream', async () => {
    setDevice(0);
    const stream = currentStream();
    group = await launchGroup({
      worldSize: 1,
      worker: weightsWorker,
      backend: 'nccl',
      mode: 'process',
      timeoutMs: 60_000,
      ...placement(1, 1),
    });
    const w = Tensor.fromArray(new Float32Array([1, 2, 3, 4, 5, 6]), { device: 'cuda:0' });
    const update = { names: ['w'], dtypeNames: ['float32'], shapes: [[6]] };
    for (let round = 0; round < 2; round++) {
      const info = await initInfo(2);
      const [trainer] = await Promise.all([
        NcclWeightTransferEngine.trainerInit(info, { timeoutMs: 60_000 }),
        group.callAll('initWeights', info),
      ]);
      const [, [received]] = await Promise.all([
        NcclWeightTransferEngine.trainerSendWeights([['w', w]], { group: trainer }),
        group.callAll<{ sums: Record<string, number> }>('receive', update),
      ]);
      expect(received.sums).toEqual({ w: 21 });
      await group.callAll('shutdownWeights');
      await trainer.close();
      expect(currentStream()).toBe(stream);
      expect(await values(w)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(await values(Tensor.full([2], round, { dtype: 'float32', device: 'cuda:0' }))).toEqual([round, round]);
    }
    await stream.synchronize(10_000);
  }, 180_000);

  it('communicator: all-reduce, destroy, a new one over the same store group, all-reduce; reads in every rank', async () => {
    group = await launchGroup({
      worldSize: 2,
      worker: closeWorker,
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(2),
    });
    const out = await callAll<number[][]>(group, 'communicatorTwice');
    expect(out).toEqual([
      [
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [1, 1, 1, 1],
      ],
      [
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [2, 2, 2, 2],
      ],
    ]);
  }, 180_000);

  it('destroyModelParallel (GroupCoordinator.destroy) and new TP groups: tensors read back, collectives work', async () => {
    group = await launchGroup({
      worldSize: 2,
      worker: closeWorker,
      backend: 'nccl',
      tensorParallelSize: 2,
      timeoutMs: 60_000,
      ...placement(2),
    });
    const out = await callAll(group, 'modelParallelTwice');
    expect(out).toEqual(MODEL_PARALLEL_TWICE);
  }, 180_000);

  it('NcclPipe: send, close, a second pipe, send; both ranks read every tensor on their stream', async () => {
    group = await launchGroup({
      worldSize: 2,
      worker: closeWorker,
      backend: 'nccl',
      timeoutMs: 60_000,
      ...placement(2),
    });
    const ports = [await freePort(), await freePort()];
    while (ports[1] === ports[0]) ports[1] = await freePort();
    const out = await callAll(group, 'pipeTwice', ports);
    const moved = [
      [1, 2, 3],
      [2, 3, 4],
    ];
    expect(out).toEqual([
      { moved, kept: [10, 10], fresh: [3, 3] },
      { moved, kept: [11, 11], fresh: [3, 3] },
    ]);
  }, 180_000);
});
