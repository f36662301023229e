// Rank side of the coordinator bench: vLLM's broadcast_tensor_dict timed as the torch
// baseline times it (barrier, then the source builds the dict of device tensors and a
// scalar, everyone broadcasts and synchronizes; per-rank wall time).
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor } from '../../src/tensor/index.ts';

export async function broadcastTensorDict(ctx: RankContext, args: { tensors: number; iters: number }) {
  const group = ctx.world;
  const lat: number[] = [];
  const issued: number[] = [];
  for (let it = 0; it < args.iters; it++) {
    await ctx.processGroup.barrier();
    const t0 = performance.now();
    let dict: Record<string, unknown> | null = null;
    if (group.rankInGroup === 0) {
      dict = { step: it };
      for (let i = 0; i < args.tensors; i++) dict[`t${i}`] = Tensor.full([1024], i, { dtype: 'float32', device: ctx.device });
    }
    const got = await group.broadcastTensorDict(dict, 0);
    issued.push((performance.now() - t0) * 1000);
    await ctx.synchronize();
    lat.push((performance.now() - t0) * 1000);
    if (got) for (const v of Object.values(got)) if (v instanceof Tensor) v.dispose();
  }
  lat.sort((a, b) => a - b);
  issued.sort((a, b) => a - b);
  // `issued`: until broadcastTensorDict resolved (metadata in, broadcasts enqueued), before the device sync.
  return { p50: lat[Math.floor(lat.length / 2)], min: lat[0], issuedP50: issued[Math.floor(issued.length / 2)] };
}
