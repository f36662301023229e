// The NCCL weight transfer engine on real GPUs: the trainer is this process on cuda:0,
// the inference workers a launchGroup on cuda:1.. (one GPU each). Worker side:
// test/weights/worker.ts (the same module the CPU launch test uses).
import { afterEach, describe, expect, it } from 'vitest';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import { Tensor, setDevice, type DType } from '../../src/tensor/index.ts';
import { NcclWeightTransferEngine, type NamedTensors, type WeightTransferGroup } from '../../src/weights/index.ts';
import { initInfo } from '../weights/helpers.ts';
import { placement, world } from './world.ts';

const worker = new URL('../weights/worker.ts', import.meta.url);
type Received = { sums: Record<string, number>; counts: Record<string, number>; batches: number };

describe.skipIf(world < 2)('NCCL weight transfer, trainer on cuda:0', () => {
  let group: Group | null = null;
  let trainer: WeightTransferGroup | null = null;
  let weights: Tensor[] = [];

  afterEach(async () => {
    for (const t of weights) t.dispose();
    weights = [];
    await group?.callAll('shutdownWeights').catch(() => {});
    await trainer?.close();
    await group?.shutdown();
    group = null;
    trainer = null;
  });

  /** Launches `n` workers on cuda:1..n and joins them with the trainer (rank 0 on cuda:0). */
  async function start(n: number): Promise<WeightTransferGroup> {
    setDevice(0);
    group = await launchGroup({
      worldSize: n,
      worker,
      backend: 'nccl',
      mode: 'process',
      timeoutMs: 60_000,
      ...placement(n, 1),
    });
    const info = await initInfo(n + 1);
    const [t, ranks] = await Promise.all([
      NcclWeightTransferEngine.trainerInit(info, { timeoutMs: 60_000 }),
      group.callAll<number>('initWeights', info),
    ]);
    trainer = t;
    expect(t.device).toBe('cuda:0');
    expect(ranks).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    return t;
  }

  it('sends ones([100, 100]) unpacked to one worker: sum 10,000', async () => {
    const t = await start(1);
    const ones = Tensor.full([100, 100], 1, { dtype: 'float32', device: 'cuda:0' });
    weights.push(ones);
    const update = { names: ['w'], dtypeNames: ['float32'], shapes: [[100, 100]] };
    const [, [r]] = await Promise.all([
      NcclWeightTransferEngine.trainerSendWeights([['w', ones]], { group: t }),
      group!.callAll<Received>('receive', update),
    ]);
    expect(r.sums).toEqual({ w: 10_000 });
    expect(r.batches).toBe(1);
  }, 120_000);

  it(`sends 2 GiB packed (1 GiB × 2 buffers) in 200 tensors of mixed dtypes to ${Math.min(3, world - 1)} workers, ` +
    `checksums verified`, async () => {
    const n = Math.min(3, world - 1);
    const t = await start(n);
    const dtypes: DType[] = ['float32', 'bfloat16', 'float16', 'int32'];
    const total = 2 ** 31;
    const each = 10_737_416; // bytes; divisible by 8; the last tensor takes the rest
    const named: NamedTensors = [];
    let bytes = 0;
    for (let i = 0; i < 200; i++) {
      const dtype = dtypes[i % dtypes.length];
      const size = i === 199 ? total - bytes : each;
      const numel = size / (dtype === 'float32' || dtype === 'int32' ? 4 : 2);
      const shape = i % 5 === 0 ? [2, numel / 2] : [numel];
      // Values 1..50 are exact in every dtype used; each tensor has its own.
      const w = Tensor.full(shape, (i % 50) + 1, { dtype, device: 'cuda:0' });
      weights.push(w);
      named.push([`layers.${i}.weight`, w]);
      bytes += size;
    }
    expect(bytes).toBe(total);
    const update = {
      names: named.map(([name]) => name),
      dtypeNames: named.map(([, w]) => w.dtype),
      shapes: named.map(([, w]) => [...w.shape]),
      packed: true,
    };
    const window = 4096;
    const [, results] = await Promise.all([
      NcclWeightTransferEngine.trainerSendWeights(named, { group: t, packed: true }),
      group!.callAll<Received>('receive', update, window),
    ]);
    const expectedSums = Object.fromEntries(named.map(([name], i) => [name, ((i % 50) + 1) * 3 * window]));
    const expectedCounts = Object.fromEntries(named.map(([name]) => [name, 3 * window]));
    for (const r of results) {
      expect(r.counts).toEqual(expectedCounts);
      expect(r.sums).toEqual(expectedSums);
      // Buffers close after the tensor that crosses 1 GiB: 101 tensors, then the 99 left.
      expect(r.batches).toBe(2);
    }
  }, 120_000);
});
