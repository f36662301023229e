// The deployment shape on the CPU backend: the trainer is this process, the inference
// workers a launchGroup (thread ranks: SAB transport; process ranks: /dev/shm).
import { describe, expect, it } from 'vitest';
import { launch } from '../helpers.ts';
import { NcclWeightTransferEngine, type NamedTensors } from '../../src/weights/index.ts';
import { initInfo, plain, tensorOf } from './helpers.ts';

const worker = new URL('./worker.ts', import.meta.url);

function weights(step: number): NamedTensors {
  return [
    ['embed', tensorOf([64, 33], 'bfloat16', step)],
    ['norm', tensorOf([33], 'float32', step + 1)],
    ['head', tensorOf([33, 70], 'float16', step + 2)],
    ['bias', tensorOf([5], 'int32', step + 3)],
  ];
}

const updateOf = (w: NamedTensors, packed: boolean) => ({
  names: w.map(([n]) => n),
  dtypeNames: w.map(([, t]) => t.dtype),
  shapes: w.map(([, t]) => [...t.shape]),
  packed,
  packedBufferSizeBytes: 4096,
});

async function expectedSums(w: NamedTensors): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [n, t] of w) out[n] = (await plain(t)).reduce((a, b) => a + b, 0);
  return out;
}

describe.each(['thread', 'process'] as const)('weight transfer to %s workers', (mode) => {
  it('sends two steps packed and one unpacked to 2 workers (ranks 1, 2); calls answer while a receive waits', async () => {
    const group = await launch({ mode, worldSize: 2, worker, timeoutMs: 10_000 });
    const info = await initInfo(3);
    const [trainer, ranks] = await Promise.all([
      NcclWeightTransferEngine.trainerInit(info, { device: 'cpu', timeoutMs: 10_000 }),
      group.callAll<number>('initWeights', info),
    ]);
    try {
      expect(ranks).toEqual([1, 2]);
      for (const [step, packed] of [
        [1, true],
        [2, true],
        [3, false],
      ] as const) {
        const w = weights(step);
        const received = group.callAll<{ sums: Record<string, number>; batches: number }>(
          'receive',
          updateOf(w, packed),
        );
        // The workers wait for the trainer's announcement; their control plane still answers.
        const t0 = performance.now();
        expect(await group.call(1, 'ping')).toBe('pong');
        expect(performance.now() - t0).toBeLessThan(1000);
        await NcclWeightTransferEngine.trainerSendWeights(w, { group: trainer, packed, packedBufferSizeBytes: 4096 });
        const expected = await expectedSums(w);
        for (const r of await received) {
          expect(r.sums).toEqual(expected);
          // embed (4224 B) crosses 4096 alone; norm + head (132 + 4620 B) cross it next; bias (20 B) is the tail.
          expect(r.batches).toBe(packed ? 3 : 4);
        }
      }
    } finally {
      await group.callAll('shutdownWeights');
      await trainer.close();
    }
  });
});

describe('weight transfer mismatch across launched workers', () => {
  it(
    'one worker expecting 1 KiB buffers while the trainer sends 4 KiB: the trainer and both workers fail in seconds, ' +
      'no hang',
    async () => {
      const group = await launch({ mode: 'thread', worldSize: 2, worker, timeoutMs: 10_000 });
      const info = await initInfo(3);
      const [trainer] = await Promise.all([
        NcclWeightTransferEngine.trainerInit(info, { device: 'cpu', timeoutMs: 10_000 }),
        group.callAll('initWeights', info),
      ]);
      try {
        const w = weights(1);
        const t0 = performance.now();
        const outcomes = await Promise.allSettled([
          NcclWeightTransferEngine.trainerSendWeights(w, { group: trainer, packed: true, packedBufferSizeBytes: 4096 }),
          group.call(0, 'receive', updateOf(w, true)),
          group.call(1, 'receive', { ...updateOf(w, true), packedBufferSizeBytes: 1024 }),
        ]);
        expect(performance.now() - t0).toBeLessThan(5000);
        const messages = outcomes.map((o) =>
          o.status === 'rejected' ? String((o.reason as Error).message) : 'resolved',
        );
        expect(messages[0]).toMatch(
          /^weight update aborted before any data moved: worker rank 2 disagrees with the trainer \(rank 0\):\n/,
        );
        expect(messages[0]).toContain(
          '(rank 0):\n  rank 2: packedBufferSizeBytes: the trainer packs 4096 bytes per buffer, this worker expects 1024',
        );
        expect(messages[1]).toMatch(/weight update aborted before any data moved: worker rank 2 disagrees/);
        expect(messages[2]).toMatch(/weight update rejected: this worker \(rank 2\) disagrees with the trainer/);
      } finally {
        await group.callAll('shutdownWeights');
        await trainer.close();
      }
    },
  );
});

describe('a failure in the middle of a transfer', () => {
  it("a worker's loadWeights throwing after the first buffer ends the update on every party in seconds, naming it", async () => {
    const group = await launch({ mode: 'process', worldSize: 2, worker, timeoutMs: 60_000 });
    const info = await initInfo(3);
    const [trainer] = await Promise.all([
      NcclWeightTransferEngine.trainerInit(info, { device: 'cpu', timeoutMs: 60_000 }),
      group.callAll('initWeights', info),
    ]);
    try {
      // 40 tensors of 4 KiB in 8 KiB buffers: 20 buffers; worker rank 2 fails at the 2nd.
      const w: NamedTensors = Array.from({ length: 40 }, (_, i) => [`w${i}`, tensorOf([1024], 'float32', i)]);
      const update = {
        names: w.map(([n]) => n),
        dtypeNames: w.map(() => 'float32'),
        shapes: w.map(() => [1024]),
        packed: true,
        packedBufferSizeBytes: 8192,
      };
      const t0 = performance.now();
      const [sent, got] = await Promise.allSettled([
        NcclWeightTransferEngine.trainerSendWeights(w, { group: trainer, packed: true, packedBufferSizeBytes: 8192 }),
        group.callAll<string>('receiveFailing', update, 1, 2),
      ]);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(sent.status).toBe('rejected');
      expect(String((sent as PromiseRejectedResult).reason)).toMatch(
        /weight transfer aborted: transfer rank 2 failed: Error: disk full while loading/,
      );
      const [other, failing] = (got as PromiseFulfilledResult<string[]>).value;
      expect(failing).toBe('Error: disk full while loading');
      expect(other).toMatch(/GroupClosedError: weight transfer aborted: transfer rank 2 failed/);
    } finally {
      await group.callAll('shutdownWeights');
      await trainer.close();
    }
  }, 30_000);
});
