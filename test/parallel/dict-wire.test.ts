import { describe, expect, it } from 'vitest';
import {
  PACK_TENSOR_MAX_BYTES,
  planWire,
  receiverWire,
  senderWire,
  type WireSlot,
} from '../../src/parallel/dict-wire.ts';
import { PACK_ALIGN_BYTES, Tensor, emptyPackedHost, packedLayout } from '../../src/tensor/index.ts';

const slot = (dtype: WireSlot['dtype'], shape: number[], onCpu = false): WireSlot => ({ dtype, shape, onCpu });

describe('the tensor-dict wire plan', () => {
  it(
    'packs the small non-empty host tensors when two or more qualify; device ones, empty ones and large ones travel ' +
      'alone or not at all',
    () => {
      const big = PACK_TENSOR_MAX_BYTES / 4 + 1; // float32 elements just past the bound
      const plan = planWire([
        slot('float32', [4]),
        slot('int64', [0, 3], true),
        slot('float16', [8], true),
        slot('float32', [big], true),
        slot('int32', [2], true),
        slot('uint8', [3]),
        slot('float32', [0]),
      ]);
      expect(plan.packed).toEqual([2, 4]);
      expect(plan.alone).toEqual([0, 3, 5]);
    },
  );

  it('a lone small host tensor travels alone', () => {
    expect(planWire([slot('float32', [4]), slot('float32', [4], true)])).toEqual({ packed: [], alone: [0, 1] });
  });

  it('lays pieces out aligned, in order', () => {
    const { offsets, bytes, totalBytes } = packedLayout([
      slot('uint8', [3]),
      slot('float64', [2, 2]),
      slot('int64', []),
    ]);
    expect(offsets).toEqual([0, PACK_ALIGN_BYTES, 2 * PACK_ALIGN_BYTES]);
    expect(bytes).toEqual([3, 32, 8]);
    expect(totalBytes).toBe(2 * PACK_ALIGN_BYTES + 8);
  });
});

describe('packed host tensors', () => {
  it('are views of one buffer at their offsets', async () => {
    const specs = [slot('int32', [3]), slot('float32', [2])];
    const packed = emptyPackedHost(specs);
    (packed.tensors[0].hostView() as Int32Array).set([1, 2, 3]);
    (packed.tensors[1].hostView() as Float32Array).set([0.5, -2]);
    const bytes = packed.buffer.hostView() as Uint8Array;
    expect(Array.from(new Int32Array(bytes.buffer, packed.offsets[0], 3))).toEqual([1, 2, 3]);
    expect(Array.from(new Float32Array(bytes.buffer, packed.offsets[1], 2))).toEqual([0.5, -2]);
  });

  it("a sender's wire copies its small tensors in; a receiver's pieces read them back exactly", async () => {
    const tensors = [
      Tensor.fromArray([1, 2, 3, 4, 5, 6], { dtype: 'int64', shape: [2, 3] }).movedim(0, 1),
      Tensor.fromArray([0.25, 8], { dtype: 'bfloat16' }),
      Tensor.empty([0], { dtype: 'float32' }),
      Tensor.fromArray([7], { dtype: 'uint8', shape: [] }),
    ];
    const slots = tensors.map((t) => slot(t.dtype, [...t.shape], true));
    const sent = senderWire(tensors, slots);
    expect(sent.device).toEqual([]);
    expect(sent.host).toHaveLength(1);
    const { tensors: got, wire } = receiverWire(slots, 'cpu');
    (wire.host[0].hostView() as Uint8Array).set(sent.host[0].hostView() as Uint8Array);
    wire.finish();
    sent.finish();
    expect(Array.from((await got[0].toArray()) as BigInt64Array, Number)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(Array.from((await got[1].toArray()) as Float32Array)).toEqual([0.25, 8]);
    expect(got[2].shape).toEqual([0]);
    expect(Array.from((await got[3].toArray()) as Uint8Array)).toEqual([7]);
    expect(got[3].shape).toEqual([]);
  });
});
