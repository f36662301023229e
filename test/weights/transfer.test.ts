// Trainer → worker round trips on the real CPU backend (store + CPU communicator), the
// trainer and one worker in this thread: dtypes × buffer sizes, packed and unpacked,
// strided inputs, and a disagreeing update that fails both sides without a hang.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import type { DType, Tensor } from '../../src/tensor/index.ts';
import {
  NcclWeightTransferEngine,
  WeightTransferMismatchError,
  planPackedBuffers,
  type NamedTensors,
} from '../../src/weights/index.ts';
import { plain, tensorOf, withPair } from './helpers.ts';

const SHAPES = [[7, 13], [100], [3, 4, 5], [], [0, 5], [1000], [1], [33, 3]];

function weightsOf(dtypes: DType[]): NamedTensors {
  return SHAPES.map((shape, i) => [`layer.${i}.weight`, tensorOf(shape, dtypes[i % dtypes.length], i)]);
}

function updateInfoOf(weights: NamedTensors, extra: Record<string, unknown> = {}) {
  return {
    names: weights.map(([n]) => n),
    dtypeNames: weights.map(([, t]) => t.dtype),
    shapes: weights.map(([, t]) => [...t.shape]),
    ...extra,
  };
}

/** Sends `weights` and receives them; returns the batches the worker's loadWeights saw. */
async function roundTrip(
  weights: NamedTensors,
  sendArgs: Record<string, unknown>,
  info: Record<string, unknown>,
): Promise<NamedTensors[]> {
  const batches: NamedTensors[] = [];
  await withPair(async (trainer, worker) => {
    await Promise.all([
      NcclWeightTransferEngine.trainerSendWeights(weights, { group: trainer, ...sendArgs }),
      worker.receiveWeights(updateInfoOf(weights, info), (b) => batches.push(b)),
    ]);
  });
  return batches;
}

async function expectSame(got: NamedTensors, sent: NamedTensors): Promise<void> {
  expect(got.map(([n, t]) => [n, t.dtype, t.shape])).toEqual(sent.map(([n, t]) => [n, t.dtype, t.shape]));
  for (let i = 0; i < sent.length; i++) expect(await plain(got[i][1])).toEqual(await plain(sent[i][1]));
}

const DTYPE_SETS: [string, DType[]][] = [
  ['float32', ['float32']],
  ['float16', ['float16']],
  ['bfloat16', ['bfloat16']],
  ['mixed', ['float32', 'bfloat16', 'uint8', 'float16', 'int32', 'float64']],
];

describe('weight transfer on the CPU backend', () => {
  it.each(DTYPE_SETS)('round-trips %s packed with 100 B, 1 KB, 10 KB and 100 KB buffers', async (_, dtypes) => {
    const weights = weightsOf(dtypes);
    for (const size of [100, 1000, 10_000, 100_000]) {
      const batches = await roundTrip(
        weights,
        { packed: true, packedBufferSizeBytes: size },
        { packed: true, packedBufferSizeBytes: size, packedNumBuffers: 1 },
      );
      await expectSame(batches.flat(), weights);
      // loadWeights is called once per buffer, with the buffer's tensors in order.
      const plan = planPackedBuffers(
        weights.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
        size,
      );
      expect(batches.map((b) => b.map(([n]) => n))).toEqual(plan.map((p) => p.slices.map((sl) => sl.name)));
      if (size === 100_000) expect(batches.length).toBe(1);
    }
  });

  it.each(DTYPE_SETS)('round-trips %s unpacked, one loadWeights call per tensor', async (_, dtypes) => {
    const weights = weightsOf(dtypes);
    const batches = await roundTrip(weights, {}, {});
    expect(batches.every((b) => b.length === 1)).toBe(true);
    await expectSame(batches.flat(), weights);
  });

  it('sends transposed and strided inputs as their values (made contiguous), packed and unpacked', async () => {
    const base = tensorOf([6, 8], 'float32', 3);
    const weights: NamedTensors = [
      ['t', base.movedim(0, 1)],
      ['s', base.narrow(1, 2, 3)],
      ['u', tensorOf([4, 5], 'bfloat16', 4).movedim(1, 0).narrow(0, 1, 3)],
    ];
    for (const [n, t] of weights) expect([n, t.isContiguous]).toEqual([n, false]);
    const contiguous: NamedTensors = weights.map(([n, t]) => [n, t.contiguous()]);
    await expectSame(
      (
        await roundTrip(
          weights,
          { packed: true, packedBufferSizeBytes: 64 },
          { packed: true, packedBufferSizeBytes: 64 },
        )
      ).flat(),
      contiguous,
    );
    await expectSame((await roundTrip(weights, {}, {})).flat(), contiguous);
  });

  it('a worker expecting other buffers, names or shapes fails the update on both sides within seconds; the next update works', async () => {
    const weights = weightsOf(['float32']);
    await withPair(async (trainer, worker) => {
      const t0 = performance.now();
      const [sent, got] = await Promise.allSettled([
        NcclWeightTransferEngine.trainerSendWeights(weights, {
          group: trainer,
          packed: true,
          packedBufferSizeBytes: 4 << 10,
        }),
        worker.receiveWeights(updateInfoOf(weights, { packed: true, packedBufferSizeBytes: 1 << 10 }), () => {}),
      ]);
      expect(performance.now() - t0).toBeLessThan(3000);
      const trainerErr = (sent as PromiseRejectedResult).reason as WeightTransferMismatchError;
      const workerErr = (got as PromiseRejectedResult).reason as WeightTransferMismatchError;
      expect(trainerErr).toBeInstanceOf(WeightTransferMismatchError);
      expect(trainerErr.ranks).toEqual([1]);
      expect(trainerErr.message).toMatch(
        /^weight update aborted before any data moved: worker rank 1 disagrees with the trainer \(rank 0\)/,
      );
      expect(trainerErr.message).toMatch(
        /packedBufferSizeBytes: the trainer packs 4096 bytes per buffer, this worker expects 1024/,
      );
      expect(workerErr).toBeInstanceOf(WeightTransferMismatchError);
      expect(workerErr.message).toMatch(/^weight update rejected: this worker \(rank 1\) disagrees with the trainer/);

      const renamed = updateInfoOf(weights);
      renamed.names = [...renamed.names];
      renamed.names[2] = 'other';
      renamed.shapes = renamed.shapes.map((s, i) => (i === 5 ? [999] : s));
      const both = await Promise.allSettled([
        NcclWeightTransferEngine.trainerSendWeights(weights, { group: trainer }),
        worker.receiveWeights(renamed, () => {}),
      ]);
      const details = ((both[1] as PromiseRejectedResult).reason as WeightTransferMismatchError).details[0];
      expect(details).toBe(
        "rank 1: names[2]: the trainer sends 'layer.2.weight', this worker expects 'other'; shapes[5] " +
          "('layer.5.weight'): the trainer sends [1000], this worker expects [999]",
      );
      expect(both[0].status).toBe('rejected');

      // Nothing moved, so the group is still in step: a matching update goes through.
      const batches: NamedTensors[] = [];
      await Promise.all([
        NcclWeightTransferEngine.trainerSendWeights(weights, {
          group: trainer,
          packed: true,
          packedBufferSizeBytes: 1 << 10,
        }),
        worker.receiveWeights(updateInfoOf(weights, { packed: true, packedBufferSizeBytes: 1 << 10 }), (b) =>
          batches.push(b),
        ),
      ]);
      await expectSame(batches.flat(), weights);
    });
  });

  it('rejects bad trainer arguments before anything is sent', async () => {
    await withPair(async (trainer) => {
      const w: NamedTensors = [['a', tensorOf([2], 'float32', 0)]];
      const send = (args: Record<string, unknown>, weights: unknown = w) =>
        NcclWeightTransferEngine.trainerSendWeights(weights as NamedTensors, { group: trainer, ...args });
      const cases: [Promise<void>, string][] = [
        [send({ src: 1 }), 'src'],
        [send({ packedBufferSizeBytes: 0 }), 'packedBufferSizeBytes'],
        [send({ packedNumBuffers: -1 }), 'packedNumBuffers'],
        [send({ group: {} }), 'group'],
        [send({ postIterFunc: () => 'x' }), 'weights'],
        [send({}, [[1, w[0][1]]]), 'weights'],
        [send({}, 42), 'weights'],
      ];
      for (const [p, argument] of cases) {
        const err = (await p.catch((e: unknown) => e)) as InvalidArgumentError;
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect(err.argument).toBe(argument);
      }
    });
  });

  it('an empty update moves nothing and calls loadWeights zero times, packed and unpacked', async () => {
    for (const packed of [true, false]) expect(await roundTrip([], { packed }, { packed })).toEqual([]);
  });

  it('refuses a second receiveWeights while one is running; the first completes', async () => {
    const weights = weightsOf(['float32']);
    await withPair(async (trainer, worker) => {
      const batches: NamedTensors[] = [];
      const first = worker.receiveWeights(updateInfoOf(weights), (b) => batches.push(b));
      await expect(worker.receiveWeights(updateInfoOf(weights), () => {})).rejects.toThrow(
        /^updateInfo: another receiveWeights is still running/,
      );
      await Promise.all([NcclWeightTransferEngine.trainerSendWeights(weights, { group: trainer }), first]);
      await expectSame(batches.flat(), weights);
    });
  });

  it('hands loadWeights fresh tensors that later updates do not touch', async () => {
    const kept: Tensor[] = [];
    await withPair(async (trainer, worker) => {
      for (const seed of [1, 2]) {
        const weights: NamedTensors = [
          ['a', tensorOf([16], 'float32', seed)],
          ['b', tensorOf([16], 'float32', seed + 10)],
        ];
        await Promise.all([
          NcclWeightTransferEngine.trainerSendWeights(weights, {
            group: trainer,
            packed: true,
            packedBufferSizeBytes: 1 << 20,
          }),
          worker.receiveWeights(updateInfoOf(weights, { packed: true, packedBufferSizeBytes: 1 << 20 }), (b) =>
            kept.push(...b.map(([, t]) => t)),
          ),
        ]);
      }
    });
    expect(await plain(kept[0])).toEqual(await plain(tensorOf([16], 'float32', 1)));
    expect(await plain(kept[3])).toEqual(await plain(tensorOf([16], 'float32', 12)));
  });
});
