// Rank side of the weight transfer tests (CPU launch test and GPU test): an inference
// worker that joins the transfer group, receives updates and reports checksums.
import type { RankContext } from '../../src/orchestrator/index.ts';
import type { Tensor } from '../../src/tensor/index.ts';
import { NcclWeightTransferEngine, parseNcclInitInfo } from '../../src/weights/index.ts';

let engine: NcclWeightTransferEngine | null = null;

/** Joins the transfer group; returns this worker's transfer rank. */
export async function initWeights(ctx: RankContext, info: Record<string, unknown>): Promise<number> {
  engine = NcclWeightTransferEngine.forRank(ctx);
  await engine.initTransferEngine(info);
  return engine.transferRank(parseNcclInitInfo(info));
}

function sumOf(values: ArrayLike<number | bigint>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += Number(values[i]);
  return s;
}

/** Sums of three windows (start, middle, end) of `t` flattened, and how many elements they hold. */
async function sampled(t: Tensor, window: number): Promise<{ sum: number; count: number }> {
  const flat = t.reshape([-1]);
  const n = flat.numel;
  const w = Math.min(window, n);
  let sum = 0;
  let count = 0;
  for (const start of [0, Math.floor((n - w) / 2), n - w]) {
    sum += sumOf(await flat.narrow(0, start, w).toArray());
    count += w;
  }
  return { sum, count };
}

/**
 * Receives one update. `window` 0: the full sum of every tensor; otherwise the sums of
 * three windows of that many elements (large GPU transfers). Returns per-name sums,
 * element counts and how many times loadWeights was called.
 */
export async function receive(_ctx: RankContext, update: Record<string, unknown>, window = 0) {
  if (!engine) throw new Error('initWeights first');
  const sums: Record<string, number> = {};
  const counts: Record<string, number> = {};
  let batches = 0;
  await engine.receiveWeights(update, async (batch) => {
    batches++;
    for (const [name, t] of batch) {
      const r =
        window > 0 && t.numel > 0 ? await sampled(t, window) : { sum: sumOf(await t.toArray()), count: t.numel };
      sums[name] = r.sum;
      counts[name] = r.count;
      t.dispose();
    }
  });
  return { sums, counts, batches };
}

/** Receives one update whose loadWeights throws at the `failAt`-th call on this rank (1-based); returns the error. */
export async function receiveFailing(
  ctx: RankContext,
  update: Record<string, unknown>,
  failOnRank: number,
  failAt: number,
): Promise<string> {
  if (!engine) throw new Error('initWeights first');
  let calls = 0;
  try {
    await engine.receiveWeights(update, (batch) => {
      for (const [, t] of batch) t.dispose();
      if (ctx.rank === failOnRank && ++calls === failAt) throw new Error('disk full while loading');
    });
    return 'resolved';
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

export function ping(): string {
  return 'pong';
}

export async function shutdownWeights(): Promise<void> {
  await engine?.shutdown();
  engine = null;
}
