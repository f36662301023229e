// Rank side of examples/quickstart.ts: every exported function runs in each rank, with
// the rank's context first. Each one checks its own result and reports a timing.
import { NcclCommunicator, Tensor, type RankContext, type TensorDict } from 'gpugroup';

/** Result of one check in one rank. */
export interface Check {
  ok: boolean;
  detail: string;
  ms: number;
}

/** All-reduces `numel` float32 values of rank+1 over the world `iters` times; every element must be 1+…+world. */
export async function allReduce(ctx: RankContext, args: { numel: number; iters: number }): Promise<Check> {
  const x = Tensor.full([args.numel], ctx.rank + 1, { dtype: 'float32', device: ctx.device });
  const expected = (ctx.worldSize * (ctx.worldSize + 1)) / 2;
  const first = await ctx.world.allReduce(x); // out of place, like vLLM
  const values = (await first.toArray()) as Float32Array;
  first.dispose();
  const bad = values.findIndex((v) => v !== expected);
  await ctx.synchronize();
  const t0 = performance.now();
  for (let i = 0; i < args.iters; i++) (await ctx.world.allReduce(x)).dispose();
  await ctx.synchronize();
  const ms = (performance.now() - t0) / args.iters;
  x.dispose();
  return {
    ok: bad === -1,
    detail: bad === -1 ? `every element ${expected}` : `element ${bad} is ${values[bad]}, expected ${expected}`,
    ms,
  };
}

/** What rank 0 broadcasts: two tensors (one on the rank's device, one on the host) and two plain values. */
function stepInputs(device: string, step: number): TensorDict {
  return {
    hidden: Tensor.arange(0, 32, 1, { dtype: 'float32', device }).reshape([4, 8]),
    positions: Tensor.fromArray([0, 1, 2, 3, step], { dtype: 'int32' }),
    step,
    phase: 'decode',
  };
}

/** Broadcasts a tensor dict from rank 0 to every rank; receivers check every key. */
export async function broadcastDict(ctx: RankContext, args: { iters: number }): Promise<Check> {
  const errors: string[] = [];
  let ms = 0;
  for (let step = 0; step < args.iters; step++) {
    const mine = ctx.rank === 0 ? stepInputs(ctx.device, step) : undefined;
    const t0 = performance.now();
    const got = (await ctx.world.broadcastTensorDict(mine, 0)) as TensorDict;
    if (step > 0) ms += performance.now() - t0; // the first one sets up the message queue
    const hidden = got.hidden as Tensor;
    const positions = got.positions as Tensor;
    const h = Array.from((await hidden.toArray()) as Float32Array);
    const p = Array.from((await positions.toArray()) as Int32Array);
    if (hidden.device !== ctx.device || hidden.shape.join('x') !== '4x8' || h.some((v, i) => v !== i))
      errors.push(`hidden on ${hidden.device} ${hidden.shape.join('x')}: ${h.slice(0, 4).join(',')}…`);
    if (positions.device !== 'cpu' || p.join(',') !== `0,1,2,3,${step}`) errors.push(`positions ${p.join(',')}`);
    if (got.step !== step || got.phase !== 'decode') errors.push(`step ${String(got.step)} phase ${String(got.phase)}`);
    hidden.dispose();
    positions.dispose();
  }
  return {
    ok: errors.length === 0,
    detail: errors[0] ?? 'every key arrived intact',
    ms: ms / Math.max(1, args.iters - 1),
  };
}

/** Captures an all-reduce into a CUDA graph, replays it `replays` times, checks the result (NCCL only). */
export async function graph(ctx: RankContext, args: { replays: number }): Promise<Check> {
  const x = Tensor.full([1024], ctx.rank + 1, { dtype: 'float32', device: ctx.device });
  const g = await ctx.world.graphCapture(async () => ctx.world.allReduce(x));
  try {
    g.replay(); // warm-up: the first launch uploads the graph
    await ctx.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < args.replays; i++) g.replay();
    await ctx.synchronize();
    const ms = (performance.now() - t0) / args.replays;
    const expected = (ctx.worldSize * (ctx.worldSize + 1)) / 2;
    const values = (await g.result.toArray()) as Float32Array;
    const bad = values.findIndex((v) => v !== expected);
    return {
      ok: bad === -1,
      detail: bad === -1 ? `every element ${expected}` : `element ${bad} is ${values[bad]}, expected ${expected}`,
      ms,
    };
  } finally {
    g.dispose();
    x.dispose();
  }
}

/**
 * On one GPU (a world of 1) the world group's collectives return their input, as vLLM's
 * do, and make no NCCL call. What NCCL can still show on one device: a one-rank NCCL
 * communicator's uneven all-gather (a grouped ncclBroadcast) and reduce-scatter (a
 * grouped ncclReduce), checked, timed, and the all-gather captured into a CUDA graph.
 */
export async function ncclOneRank(
  ctx: RankContext,
  args: { numel: number; iters: number; replays: number },
): Promise<{ ops: Check; graph: Check; version: string }> {
  const solo = await NcclCommunicator.create({
    group: ctx.processGroup,
    device: ctx.device,
    groupName: 'quickstart-one-rank',
    timeoutMs: ctx.timeoutMs,
  });
  const n = args.numel;
  const x = Tensor.arange(n, { dtype: 'float32', device: ctx.device });
  try {
    const gathered = await solo.allGatherv(x, [n]);
    const reduced = await solo.reduceScatterv(x, [n]);
    const g = (await gathered.toArray()) as Float32Array;
    const r = (await reduced.toArray()) as Float32Array;
    gathered.dispose();
    reduced.dispose();
    const bad = [g.findIndex((v, i) => v !== i), r.findIndex((v, i) => v !== i)];
    await solo.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < args.iters; i++) (await solo.allGatherv(x, [n])).dispose();
    await solo.synchronize();
    const ms = (performance.now() - t0) / args.iters;
    const ops: Check = {
      ok: bad[0] === -1 && bad[1] === -1,
      detail:
        bad[0] !== -1
          ? `all-gatherv element ${bad[0]} is ${g[bad[0]]}`
          : bad[1] !== -1
            ? `reduce-scatterv element ${bad[1]} is ${r[bad[1]]}`
            : 'all-gatherv and reduce-scatterv: every element intact',
      ms,
    };
    const graph = await ctx.world.graphCapture(async () => solo.allGatherv(x, [n]));
    try {
      graph.replay(); // warm-up: the first launch uploads the graph
      await solo.synchronize();
      const t1 = performance.now();
      for (let i = 0; i < args.replays; i++) graph.replay();
      await solo.synchronize();
      const gms = (performance.now() - t1) / args.replays;
      const out = (await graph.result.toArray()) as Float32Array;
      const gbad = out.findIndex((v, i) => v !== i);
      return {
        ops,
        graph: {
          ok: gbad === -1,
          detail: gbad === -1 ? 'every element intact' : `element ${gbad} is ${out[gbad]}`,
          ms: gms,
        },
        version: solo.ncclVersion,
      };
    } finally {
      graph.dispose();
    }
  } finally {
    x.dispose();
    await solo.destroy();
  }
}
