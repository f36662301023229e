import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import { NcclCommunicator } from '../../src/comm/index.ts';
import { StatelessProcessGroup } from '../../src/store/index.ts';
import { Tensor, setDevice } from '../../src/tensor/index.ts';

const gpus = cudaDeviceCount();

describe.skipIf(gpus === 0)('a one-rank NCCL communicator with singleRankOps', () => {
  let group: StatelessProcessGroup;
  let comm: NcclCommunicator;
  beforeAll(async () => {
    setDevice(0);
    group = await StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 1 });
    comm = await NcclCommunicator.create({ group, device: 'cuda:0', groupName: 'one', singleRankOps: true });
  }, 60_000);
  afterAll(async () => {
    comm?.destroy();
    await group?.close();
  });

  const values = (n: number) => Array.from({ length: n }, (_, i) => i * 0.5 - 3);

  it('all-reduce returns a new tensor holding the input', async () => {
    const x = Tensor.fromArray(values(6), { shape: [2, 3], device: 'cuda:0' });
    const y = await comm.allReduce(x);
    expect(y).not.toBe(x);
    expect(y.dataPtr).not.toBe(x.dataPtr);
    expect(y.shape).toEqual([2, 3]);
    expect(Array.from((await y.toArray()) as Float32Array)).toEqual(values(6));
    y.dispose();
    x.dispose();
  });

  it('all-reduce of a transposed input reduces its values in its own order', async () => {
    const x = Tensor.fromArray(values(6), { shape: [2, 3], device: 'cuda:0' });
    const t = x.movedim(0, 1);
    const y = await comm.allReduce(t);
    expect(y.shape).toEqual([3, 2]);
    expect(Array.from((await y.toArray()) as Float32Array)).toEqual(
      Array.from((await t.contiguous().toArray()) as Float32Array),
    );
    y.dispose();
    x.dispose();
  });

  it.each([0, 1, -1])('all-gather and reduce-scatter along dim %i give the input back', async (dim) => {
    const x = Tensor.fromArray(values(12), { shape: [3, 4], device: 'cuda:0' });
    const want = Array.from((await x.toArray()) as Float32Array);
    const g = await comm.allGather(x, dim);
    expect(g.shape).toEqual([3, 4]);
    expect(Array.from((await g.toArray()) as Float32Array)).toEqual(want);
    const r = await comm.reduceScatter(x, dim);
    expect(r.shape).toEqual([3, 4]);
    expect(Array.from((await r.toArray()) as Float32Array)).toEqual(want);
    g.dispose();
    r.dispose();
    x.dispose();
  });

  it('broadcast fills its argument in place', async () => {
    const x = Tensor.fromArray(values(5), { device: 'cuda:0' });
    expect(await comm.broadcast(x, 0)).toBe(x);
    expect(Array.from((await x.toArray()) as Float32Array)).toEqual(values(5));
    x.dispose();
  });

  it('10 000 back-to-back all-reduces with outputs disposed at once keep every value', async () => {
    const x = Tensor.full([1024], 2, { device: 'cuda:0' });
    let last: Tensor | null = null;
    for (let i = 0; i < 10_000; i++) {
      last?.dispose();
      last = await comm.allReduce(x);
    }
    await comm.synchronize();
    expect(new Set((await last!.toArray()) as Float32Array)).toEqual(new Set([2]));
    last!.dispose();
    x.dispose();
  });
});
