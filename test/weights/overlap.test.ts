// The worker's order of work on the CPU backend: the next broadcast is issued before
// loadWeights gets the current tensor (unpacked) or buffer (packed, two buffers or more),
// so the worker's own host work overlaps the next transfer.
import { describe, expect, it } from 'vitest';
import type { DeviceCommunicator } from '../../src/comm/index.ts';
import { NcclWeightTransferEngine, type NamedTensors } from '../../src/weights/index.ts';
import { plain, tensorOf, withPair } from './helpers.ts';

/** Runs one update and returns the worker's events in order: `b` broadcast issued, `l` loadWeights called. */
async function order(
  weights: NamedTensors,
  args: { packed: boolean; packedBufferSizeBytes?: number; packedNumBuffers?: number },
): Promise<{ events: string[]; got: NamedTensors }> {
  const events: string[] = [];
  const got: NamedTensors = [];
  await withPair(async (trainer, worker) => {
    // The worker's communicator, reached for this check only.
    const comm = (worker as unknown as { group: { communicator: DeviceCommunicator } }).group.communicator;
    const broadcast = comm.broadcast.bind(comm);
    let b = 0;
    comm.broadcast = (t, src) => {
      events.push(`b${b++}`);
      return broadcast(t, src);
    };
    let l = 0;
    await Promise.all([
      NcclWeightTransferEngine.trainerSendWeights(weights, { group: trainer, ...args }),
      worker.receiveWeights(
        {
          names: weights.map(([n]) => n),
          dtypeNames: weights.map(([, t]) => t.dtype),
          shapes: weights.map(([, t]) => [...t.shape]),
          ...args,
        },
        (batch) => {
          events.push(`l${l++}`);
          got.push(...batch);
        },
      ),
    ]);
  });
  return { events, got };
}

const weights: NamedTensors = Array.from({ length: 4 }, (_, i) => [`w.${i}`, tensorOf([64], 'float32', i)]);

describe('weight transfer: the worker overlaps its host work with the next transfer', () => {
  it('unpacked: tensor i+1 is being received before loadWeights gets tensor i', async () => {
    const { events, got } = await order(weights, { packed: false });
    expect(events).toEqual(['b0', 'b1', 'l0', 'b2', 'l1', 'b3', 'l2', 'l3']);
    for (let i = 0; i < weights.length; i++) expect(await plain(got[i][1])).toEqual(await plain(weights[i][1]));
  });

  it('packed, two buffers: buffer k+1 is being received before buffer k is unpacked and handed over', async () => {
    // 256 B per tensor, 300 B buffers: one buffer per two tensors, two buffers.
    const { events, got } = await order(weights, { packed: true, packedBufferSizeBytes: 300, packedNumBuffers: 2 });
    expect(events).toEqual(['b0', 'b1', 'l0', 'l1']);
    expect(got.map(([n]) => n)).toEqual(weights.map(([n]) => n));
    for (let i = 0; i < weights.length; i++) expect(await plain(got[i][1])).toEqual(await plain(weights[i][1]));
  });

  it('packed, one buffer: no broadcast ahead (its memory is the one buffer)', async () => {
    const { events } = await order(weights, { packed: true, packedBufferSizeBytes: 300, packedNumBuffers: 1 });
    expect(events).toEqual(['b0', 'l0', 'b1', 'l1']);
  });
});
