// Rank side of `npm run bench -- weights`: an inference worker that receives updates
// (loadWeights drops each tensor at once), plus a second transfer group for the raw
// broadcast reference measured in the same topology.
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor } from '../../src/tensor/index.ts';
import {
  NcclWeightTransferEngine,
  WeightTransferGroup,
  packedBroadcastConsumer,
  parseNcclInitInfo,
  type TensorSpec,
} from '../../src/weights/index.ts';

let engine: NcclWeightTransferEngine | null = null;
let ref: WeightTransferGroup | null = null;

/** Joins the transfer group and the reference group (both collective with the trainer). */
export async function join(
  ctx: RankContext,
  info: Record<string, unknown>,
  refInfo: Record<string, unknown>,
): Promise<void> {
  engine = NcclWeightTransferEngine.forRank(ctx);
  await engine.initTransferEngine(info);
  ref = await WeightTransferGroup.create(parseNcclInitInfo(refInfo), engine.transferRank(parseNcclInitInfo(info)), {
    device: ctx.device,
    timeoutMs: ctx.timeoutMs,
  });
}

/** Receives one update; loadWeights frees each tensor at once. */
export async function receive(_ctx: RankContext, update: Record<string, unknown>): Promise<void> {
  await engine!.receiveWeights(update, (batch) => {
    for (const [, t] of batch) t.dispose();
  });
}

/**
 * Host time per tensor on the worker: receives one update whose loadWeights spends
 * `workUs` of host time per tensor (busy, as a model's weight loader copying and
 * converting would), returns the update's wall time in ms.
 */
export async function receiveWithWork(
  _ctx: RankContext,
  args: { update: Record<string, unknown>; workUs: number },
): Promise<number> {
  const t0 = performance.now();
  await engine!.receiveWeights(args.update, (batch) => {
    for (const [, t] of batch) {
      const until = performance.now() + args.workUs / 1000;
      while (performance.now() < until);
      t.dispose();
    }
  });
  return performance.now() - t0;
}

/** The receiving side of the reference: `warmup + iters` broadcasts of `bytes` from the trainer. */
export async function refBroadcast(
  ctx: RankContext,
  args: { bytes: number; warmup: number; iters: number },
): Promise<void> {
  const comm = ref!.communicator;
  const t = Tensor.empty([args.bytes], { dtype: 'uint8', device: ctx.device });
  for (let i = 0; i < args.warmup; i++) await comm.broadcast(t, 0);
  await comm.synchronize();
  await ref!.processGroup.barrier();
  for (let i = 0; i < args.iters; i++) await comm.broadcast(t, 0);
  await comm.synchronize();
  t.dispose();
}

/** The packed pipeline alone on the reference group (no engine, no handshake): the consumer side. */
export async function packedPipeline(
  _ctx: RankContext,
  args: { specs: TensorSpec[]; bufferBytes: number },
): Promise<void> {
  await packedBroadcastConsumer(
    args.specs,
    ref!.communicator,
    { src: 0, bufferSizeBytes: args.bufferBytes, numBuffers: 2 },
    (batch) => {
      for (const [, t] of batch) t.dispose();
    },
  );
  await ref!.communicator.synchronize();
}

export async function leave(): Promise<void> {
  await engine?.shutdown();
  await ref?.close();
  engine = null;
  ref = null;
}
