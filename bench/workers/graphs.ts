// Rank side of the graph bench: 100 all-reduces captured in one graph, replayed 10
// times between CUDA events (the method of nccl-tests -G and of the torch baseline).
import type { RankContext } from '../../src/orchestrator/index.ts';
import { CudaEvent, Tensor, currentStream } from '../../src/tensor/index.ts';

export async function graphSweep(ctx: RankContext, args: { sizes: number[] }) {
  const records: Record<string, unknown>[] = [];
  for (const bytes of args.sizes) {
    const x = Tensor.full([Math.max(1, Math.floor(bytes / 4))], 1, { device: ctx.device });
    const graph = await ctx.world.graphCapture(async () => {
      let y = x;
      for (let i = 0; i < 100; i++) y = await ctx.world.allReduce(x);
      return y;
    });
    graph.replay();
    await currentStream().synchronize();
    await ctx.processGroup.barrier();
    const start = new CudaEvent(true).record();
    for (let i = 0; i < 10; i++) graph.replay();
    const end = new CudaEvent(true).record();
    await end.wait();
    const us = (end.elapsedMsSince(start) * 1000) / 1000;
    start.dispose();
    end.dispose();
    graph.dispose();
    x.dispose();
    if (ctx.rank === 0)
      records.push({
        impl: 'gpugroup',
        op: 'all_reduce',
        graph: true,
        world: ctx.worldSize,
        bytes,
        us: +us.toFixed(2),
      });
  }
  return records;
}
