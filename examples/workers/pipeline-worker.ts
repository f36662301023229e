// Rank side of examples/pipeline.ts: a toy model of `numLayers` layers cut into PP stages
// (getPpIndices, as vLLM splits a model), each layer tensor-parallel over the stage's TP
// group. Microbatches flow stage to stage as tensor dicts (sendTensorDict/recvTensorDict,
// each TP rank sending its slice and the next stage all-gathering it, as vLLM's send_tensor_dict).
import { Tensor, getPpIndices, type RankContext, type TensorDict } from '../../src/index.ts';

export interface PipelineJob {
  numLayers: number;
  microbatches: number;
  tokens: number;
  hidden: number;
}

/** Microbatch `mb`'s input activations: small non-negative integers. */
export function input(job: PipelineJob, mb: number): Float32Array {
  return Float32Array.from({ length: job.tokens * job.hidden }, (_, i) => (i * 3 + mb * 5) % 11);
}

/** TP rank `r`'s partial sum of layer `l`: what a row-parallel linear leaves to all-reduce. */
function partial(h: Float32Array, layer: number, r: number): Float32Array {
  return h.map((v) => (v % 7) + r + layer);
}

/** The whole model on one device, for checking: every layer adds the sum of its TP partials. */
export function reference(job: PipelineJob, mb: number, tp: number): Float32Array {
  let h = input(job, mb);
  for (let l = 0; l < job.numLayers; l++) {
    const parts = Array.from({ length: tp }, (_, r) => partial(h, l, r));
    h = h.map((v, i) => v + parts.reduce((a, p) => a + p[i], 0));
  }
  return h;
}

/** Runs every microbatch through this rank's stage; the last stage returns the outputs. */
export async function run(ctx: RankContext, job: PipelineJob) {
  const stage = ctx.pp.rankInGroup;
  const [start, end] = getPpIndices(job.numLayers, stage, ctx.pp.worldSize);
  const shape = [job.tokens, job.hidden];
  const errors: string[] = [];
  const outputs: number[][] = [];
  const t0 = performance.now();
  for (let mb = 0; mb < job.microbatches; mb++) {
    let h: Float32Array;
    if (ctx.pp.isFirstRank) {
      h = input(job, mb);
    } else {
      const got = (await ctx.pp.recvTensorDict(undefined, { allGatherGroup: ctx.tp })) as TensorDict;
      const hidden = got.hidden as Tensor;
      const residual = got.residual as Tensor;
      h = (await hidden.toArray()) as Float32Array;
      const res = (await residual.toArray()) as Int32Array;
      if (got.microbatch !== mb || got.layersDone !== start)
        errors.push(
          `stage ${stage} got microbatch ${String(got.microbatch)} after layer ${String(got.layersDone)}, expected ${mb} after ${start}`,
        );
      if (hidden.shape.join('x') !== shape.join('x')) errors.push(`hidden arrived as ${hidden.shape.join('x')}`);
      if (!input(job, mb).every((v, i) => res[i] === v))
        errors.push(`microbatch ${mb}: residual differs from the input`);
      hidden.dispose();
      residual.dispose();
    }
    for (let l = start; l < end; l++) {
      const t = Tensor.fromArray(partial(h, l, ctx.tp.rankInGroup), { shape, device: ctx.device });
      const sum = await ctx.tp.allReduce(t);
      const s = (await sum.toArray()) as Float32Array;
      h = h.map((v, i) => v + s[i]);
      t.dispose();
      sum.dispose();
    }
    if (ctx.pp.isLastRank) {
      outputs.push(Array.from(h));
    } else {
      const dict: TensorDict = {
        hidden: Tensor.fromArray(h, { shape, device: ctx.device }),
        residual: Tensor.fromArray(input(job, mb), { shape, dtype: 'int32', device: ctx.device }),
        microbatch: mb,
        layersDone: end,
      };
      await ctx.pp.sendTensorDict(dict, undefined, { allGatherGroup: ctx.tp });
      (dict.hidden as Tensor).dispose();
      (dict.residual as Tensor).dispose();
    }
  }
  return {
    rank: ctx.rank,
    stage,
    tpRank: ctx.tp.rankInGroup,
    layers: [start, end],
    errors,
    outputs,
    ms: performance.now() - t0,
  };
}
