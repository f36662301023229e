// Inference-worker side of examples/weight-sync.ts: joins the trainer's transfer group,
// receives each update packed, "loads" it into a name → tensor map and checks every
// tensor against the checksum the trainer computed.
import type { RankContext } from 'gpugroup';
import type { Tensor } from 'gpugroup';
import { NcclWeightTransferEngine, type NcclWeightTransferUpdateInfo } from 'gpugroup';

let engine: NcclWeightTransferEngine | null = null;
const model = new Map<string, Tensor>();

/** Joins the transfer group (collective with the trainer's trainerInit). */
export async function join(ctx: RankContext, info: Record<string, unknown>): Promise<void> {
  engine = NcclWeightTransferEngine.forRank(ctx);
  await engine.initTransferEngine(info);
}

/** Receives one update; returns how many tensors were loaded and which checksums failed. */
export async function sync(
  _ctx: RankContext,
  args: { update: Partial<NcclWeightTransferUpdateInfo>; checksums: Record<string, number> },
) {
  if (!engine) throw new Error('join() first');
  const bad: string[] = [];
  let loaded = 0;
  await engine.receiveWeights(args.update, async (batch) => {
    for (const [name, t] of batch) {
      let sum = 0;
      for (const v of await t.toArray()) sum += Number(v);
      if (sum !== args.checksums[name]) bad.push(`${name}: ${sum} != ${args.checksums[name]}`);
      model.get(name)?.dispose();
      model.set(name, t);
      loaded++;
    }
  });
  return { loaded, bad };
}

export async function leave(): Promise<void> {
  await engine?.shutdown();
  engine = null;
  for (const t of model.values()) t.dispose();
  model.clear();
}
