// Rank side of examples/pipeline.ts: a toy model of `numLayers` layers cut into PP stages
// (getPpIndices, as vLLM splits a model), each layer tensor-parallel over the stage's TP
// group. Microbatches flow stage to stage as tensor dicts (sendTensorDict/recvTensorDict,
// each TP rank sending its slice and the next stage all-gathering it, as vLLM's
// GroupCoordinator.send_tensor_dict does). A stage's layers run on its ranks' devices with
// gpugroup's ops (generated kernels on a GPU, host loops on the CPU backend): the
// activations stay device tensors from the input to the last stage's output.
import { Tensor, add, getPpIndices, relu, sub, type RankContext, type TensorDict } from 'gpugroup';

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

/**
 * TP rank `r`'s partial sum of layer `l`, relu(h − (r + l)): what a row-parallel layer
 * leaves to all-reduce. Integers all the way (at most 3× growth a layer at TP=2), so
 * float32 is exact and the output can be checked for equality.
 */
function partial(h: Tensor, layer: number, r: number): Tensor {
  const shifted = sub(h, r + layer);
  const out = relu(shifted);
  shifted.dispose();
  return out;
}

/** The whole model on the host, for checking: every layer adds the sum of its TP partials. */
export function reference(job: PipelineJob, mb: number, tp: number): Float32Array {
  let h = input(job, mb);
  for (let l = 0; l < job.numLayers; l++) {
    const parts = Array.from({ length: tp }, (_, r) => h.map((v) => Math.max(0, v - (r + l))));
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
    let h: Tensor;
    if (ctx.pp.isFirstRank) {
      h = Tensor.fromArray(input(job, mb), { shape, device: ctx.device });
    } else {
      const got = (await ctx.pp.recvTensorDict(undefined, { allGatherGroup: ctx.tp })) as TensorDict;
      const hidden = got.hidden as Tensor;
      const residual = got.residual as Tensor;
      h = hidden;
      const res = (await residual.toArray()) as Int32Array;
      if (got.microbatch !== mb || got.layersDone !== start)
        errors.push(
          `stage ${stage} got microbatch ${String(got.microbatch)} after layer ${String(got.layersDone)}, expected ${mb} after ${start}`,
        );
      if (hidden.shape.join('x') !== shape.join('x')) errors.push(`hidden arrived as ${hidden.shape.join('x')}`);
      if (!input(job, mb).every((v, i) => res[i] === v))
        errors.push(`microbatch ${mb}: residual differs from the input`);
      residual.dispose();
    }
    for (let l = start; l < end; l++) {
      const t = partial(h, l, ctx.tp.rankInGroup);
      const sum = await ctx.tp.allReduce(t);
      const next = add(h, sum);
      for (const done of [t, sum, h]) done.dispose();
      h = next;
    }
    if (ctx.pp.isLastRank) {
      outputs.push(Array.from((await h.toArray()) as Float32Array));
      h.dispose();
    } else {
      const dict: TensorDict = {
        hidden: h,
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
