// The packing plan (vLLM's packed_tensor.py) and the producer/consumer's buffer traffic, with a
// recording communicator that only counts what would be broadcast (the real CPU
// communicator carries the data in transfer.test.ts).
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/tensor/index.ts';
import {
  packedBroadcastConsumer,
  packedBroadcastProducer,
  planPackedBuffers,
  tensorBytes,
  type BroadcastCommunicator,
  type NamedTensors,
  type TensorSpec,
} from '../../src/weights/index.ts';
import { plain, tensorOf } from './helpers.ts';

/** Records the byte size of every broadcast; each completes after `delayMs`. */
function recorder(delayMs = 0) {
  const sizes: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const comm: BroadcastCommunicator = {
    device: 'cpu',
    async broadcast(t: Tensor) {
      sizes.push(t.nbytes);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await new Promise((r) => setTimeout(r, delayMs));
      inFlight--;
      return t;
    },
    async synchronize() {},
  };
  return { comm, sizes, maxInFlight: () => maxInFlight };
}

const spec = (i: number, shape: number[]): TensorSpec => ({ name: `w${i}`, dtype: 'float32', shape });
const opts = (bufferSizeBytes: number, numBuffers = 2) => ({ src: 0, bufferSizeBytes, numBuffers });

describe('packing plan', () => {
  it('puts a single 4,000,000-byte tensor in one buffer of exactly 4,000,000 bytes, even with a 100-byte target', async () => {
    const plans = planPackedBuffers([spec(0, [1000, 1000])], 100);
    expect(plans.map((p) => p.bytes)).toEqual([4_000_000]);
    const { comm, sizes } = recorder();
    await packedBroadcastProducer([['w0', Tensor.zeros([1_000_000])]], comm, opts(100));
    expect(sizes).toEqual([4_000_000]);
  });

  it('closes a buffer after the tensor that crosses the target: 20 × 400 B with 2,000 B → 6, 6, 6, 2 tensors', async () => {
    const specs = Array.from({ length: 20 }, (_, i) => spec(i, [100]));
    const plans = planPackedBuffers(specs, 2000);
    expect(plans.map((p) => p.slices.map((s) => s.index))).toEqual([
      [0, 1, 2, 3, 4, 5],
      [6, 7, 8, 9, 10, 11],
      [12, 13, 14, 15, 16, 17],
      [18, 19],
    ]);
    expect(plans.map((p) => p.bytes)).toEqual([2400, 2400, 2400, 800]);
    expect(plans[1].slices.map((s) => s.offset)).toEqual([0, 400, 800, 1200, 1600, 2000]);
    const { comm, sizes } = recorder();
    await packedBroadcastProducer(
      specs.map((s) => [s.name, Tensor.zeros(s.shape)]),
      comm,
      opts(2000),
    );
    expect(sizes).toEqual([2400, 2400, 2400, 800]);
    const consumed = recorder();
    const batches: string[][] = [];
    await packedBroadcastConsumer(specs, consumed.comm, opts(2000), (b) => batches.push(b.map(([n]) => n)));
    expect(consumed.sizes).toEqual([2400, 2400, 2400, 800]);
    expect(batches.map((b) => b.length)).toEqual([6, 6, 6, 2]);
  });

  it('a total exactly at the target does not close the buffer (strictly greater)', () => {
    expect(planPackedBuffers([spec(0, [250]), spec(1, [250]), spec(2, [1])], 2000).map((p) => p.bytes)).toEqual([2004]);
  });

  it('an empty iterator makes zero broadcasts on both sides', async () => {
    expect(planPackedBuffers([], 100)).toEqual([]);
    const { comm, sizes } = recorder();
    await packedBroadcastProducer([], comm, opts(100));
    let calls = 0;
    await packedBroadcastConsumer([], comm, opts(100), () => calls++);
    expect(sizes).toEqual([]);
    expect(calls).toBe(0);
  });

  it('sizes are prod(shape) × itemsize, a scalar 1 element; producer and consumer plans agree for mixed dtypes', () => {
    expect(tensorBytes('bfloat16', [])).toBe(2);
    expect(tensorBytes('int64', [3, 0])).toBe(0);
    const tensors: NamedTensors = [
      ['a', tensorOf([3, 5], 'float16', 1)],
      ['b', tensorOf([7], 'uint8', 2)],
      ['c', tensorOf([2, 2], 'float64', 3)],
      ['d', tensorOf([], 'bfloat16', 4)],
    ];
    const fromTensors = planPackedBuffers(
      tensors.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
      16,
    );
    const fromInfo = planPackedBuffers(
      [
        { name: 'a', dtype: 'float16', shape: [3, 5] },
        { name: 'b', dtype: 'uint8', shape: [7] },
        { name: 'c', dtype: 'float64', shape: [2, 2] },
        { name: 'd', dtype: 'bfloat16', shape: [] },
      ],
      16,
    );
    expect(fromTensors).toEqual(fromInfo);
    expect(fromInfo.map((p) => p.bytes)).toEqual([30, 39, 2]);
  });

  it.each([
    [1, 1],
    [2, 2],
    [3, 3],
  ])('with %i buffer(s) in rotation, at most %i broadcasts are in flight', async (numBuffers, expected) => {
    const { comm, sizes, maxInFlight } = recorder(5);
    await packedBroadcastProducer(
      Array.from({ length: 6 }, (_, i) => [`w${i}`, Tensor.zeros([100])] as [string, Tensor]),
      comm,
      opts(300, numBuffers),
    );
    expect(sizes).toEqual([400, 400, 400, 400, 400, 400]);
    expect(maxInFlight()).toBe(expected);
  });

  it('unpacked tensors are copies: each has its own storage, writing one leaves the others intact', async () => {
    // A loopback communicator: the "broadcast" fills the consumer's buffer with bytes the producer packed.
    let wire: Uint8Array = new Uint8Array(0);
    const sender: BroadcastCommunicator = {
      device: 'cpu',
      async broadcast(t) {
        wire = Uint8Array.from((await t.toArray()) as Uint8Array);
        return t;
      },
      async synchronize() {},
    };
    const receiver: BroadcastCommunicator = {
      device: 'cpu',
      async broadcast(t) {
        (t.hostView() as Uint8Array).set(wire);
        return t;
      },
      async synchronize() {},
    };
    const sent: NamedTensors = [
      ['a', tensorOf([2, 3], 'float32', 1)],
      ['b', tensorOf([5], 'bfloat16', 2)],
    ];
    await packedBroadcastProducer(sent, sender, opts(1 << 20));
    let got: NamedTensors = [];
    await packedBroadcastConsumer(
      sent.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
      receiver,
      opts(1 << 20),
      (b) => (got = b),
    );
    expect(await plain(got[0][1])).toEqual(await plain(sent[0][1]));
    expect(got[0][1].storage).not.toBe(got[1][1].storage);
    (got[0][1].hostView() as Float32Array).fill(0);
    expect(await plain(got[1][1])).toEqual(await plain(sent[1][1]));
  });
});

describe('segments of a packed buffer (the device path broadcasts a buffer in segments)', () => {
  it('cover each buffer exactly, and the overlaps put every byte of every tensor in place once', async () => {
    const { segments, overlap } = await import('../../src/weights/segmented.ts');
    const { prng } = await import('../prng.ts');
    const rand = prng(7);
    for (let trial = 0; trial < 200; trial++) {
      const specs: TensorSpec[] = Array.from({ length: 1 + Math.floor(rand() * 20) }, (_, i) => ({
        name: `t${i}`,
        dtype: rand() < 0.5 ? 'float32' : 'bfloat16',
        shape: [Math.floor(rand() * 300)],
      }));
      const size = 1 + Math.floor(rand() * 700);
      for (const plan of planPackedBuffers(specs, 1 + Math.floor(rand() * 2000))) {
        const cuts = segments(plan.bytes, size);
        // Contiguous, in order, none empty, ending at the buffer's end.
        let at = 0;
        for (const [a, b] of cuts) {
          expect(a).toBe(at);
          expect(b).toBeGreaterThan(a);
          expect(b - a).toBeLessThanOrEqual(size);
          at = b;
        }
        expect(at).toBe(plan.bytes);
        for (const slice of plan.slices) {
          const covered = new Uint8Array(slice.bytes);
          for (const [a, b] of cuts) {
            const part = overlap(slice, a, b);
            if (!part) continue;
            expect(part.at - part.within).toBe(slice.offset); // same byte of the buffer and of the tensor
            covered.fill(covered[part.within] + 1, part.within, part.within + part.bytes);
          }
          expect(covered.every((c) => c === 1)).toBe(true);
        }
      }
    }
  });
});
