// Helpers of the weight transfer tests: a free port for the trainer's store, a
// trainer/worker pair in this thread (both real: store, CPU communicator), and
// deterministic tensors whose values every dtype holds exactly.
import { freePort } from '../../src/store/index.ts';
export { freePort };
import {
  NcclWeightTransferEngine,
  type WeightTransferGroup,
  type NcclWeightTransferInitInfo,
} from '../../src/weights/index.ts';
import { Tensor, type DType } from '../../src/tensor/index.ts';

export async function initInfo(worldSize: number): Promise<NcclWeightTransferInitInfo> {
  return { masterAddress: '127.0.0.1', masterPort: await freePort(), rankOffset: 1, worldSize };
}

/** A trainer (rank 0) and one worker (rank 1), both in this thread, on the CPU backend. */
export async function withPair(
  fn: (trainer: WeightTransferGroup, worker: NcclWeightTransferEngine) => Promise<void>,
): Promise<void> {
  const info = await initInfo(2);
  const worker = new NcclWeightTransferEngine({ device: 'cpu', timeoutMs: 5_000 });
  const [trainer] = await Promise.all([
    NcclWeightTransferEngine.trainerInit(info, { device: 'cpu', timeoutMs: 5_000 }),
    worker.initTransferEngine(info),
  ]);
  try {
    await fn(trainer, worker);
  } finally {
    await worker.shutdown();
    await trainer.close();
  }
}

/** Values exactly representable in every float dtype (halves in [-32, 32)), keyed by a seed. */
export function values(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (((i * 37 + seed * 11) % 128) - 64) / 2);
}

/** A tensor of `values` (floats) or of integers in [0, 128) (integer dtypes). */
export function tensorOf(shape: number[], dtype: DType, seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data =
    dtype.startsWith('float') || dtype === 'bfloat16'
      ? values(n, seed)
      : values(n, seed).map((v) => Math.floor(v) + 64);
  return Tensor.fromArray(dtype === 'int64' ? data.map(BigInt) : data, { shape, dtype });
}

/** Plain values of a tensor (row-major), for toEqual. */
export async function plain(t: Tensor): Promise<number[]> {
  return Array.from(await t.toArray(), Number);
}
