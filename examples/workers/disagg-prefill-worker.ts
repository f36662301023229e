// Both sides of examples/disagg-prefill.ts: rank 0 is the prefill instance, rank 1 the
// decode instance; the KV cache of each request crosses through an NcclPipe.
import { NcclPipe, Tensor, type RankContext } from 'gpugroup';

const LAYERS = 4;
const HEADS = 8;
const HEAD_DIM = 64;

/** The "KV cache" value of request r, layer l, keys (0) or values (1): an integer bfloat16 holds exactly (< 256). */
export function kvValue(r: number, l: number, kind: 0 | 1): number {
  return ((r * LAYERS + l) * 2 + kind) % 256;
}

/**
 * Prefill: for each request, send its input tokens, then keys and values of every layer
 * ([tokens, heads, headDim] bfloat16), then the hidden state; null ends the stream.
 * Decode: receive them in order and check every value; returns the checked count.
 */
export async function run(ctx: RankContext, args: { port: number; requests: number }) {
  const pipe = await NcclPipe.create({
    localRank: ctx.localRank,
    kvRank: ctx.rank,
    kvParallelSize: 2,
    kvIp: '127.0.0.1',
    kvPort: args.port,
    device: ctx.device === 'cpu' ? 'cpu' : 'cuda',
    bufferSizeBytes: 64 << 20,
    abortSignal: ctx.abortSignal,
  });
  const errors: string[] = [];
  let checked = 0;
  try {
    for (let r = 0; r < args.requests; r++) {
      const tokens = 16 + 8 * r;
      if (ctx.rank === 0) {
        await pipe.sendTensor(Tensor.arange(tokens, { dtype: 'int64' }).to(ctx.device));
        for (let l = 0; l < LAYERS; l++) {
          for (const kind of [0, 1] as const) {
            await pipe.sendTensor(
              Tensor.full([tokens, HEADS, HEAD_DIM], kvValue(r, l, kind), { dtype: 'bfloat16', device: ctx.device }),
            );
          }
        }
        await pipe.sendTensor(Tensor.full([tokens, HEADS * HEAD_DIM], r, { dtype: 'float32', device: ctx.device }));
        continue;
      }
      const ids = (await pipe.recvTensor())!;
      if (ids.numel !== tokens) errors.push(`request ${r}: ${ids.numel} tokens, expected ${tokens}`);
      for (let l = 0; l < LAYERS; l++) {
        for (const kind of [0, 1] as const) {
          const kv = (await pipe.recvTensor())!;
          const v = (await kv.toArray()) as Float32Array;
          if (
            kv.dtype !== 'bfloat16' ||
            kv.shape.join() !== [tokens, HEADS, HEAD_DIM].join() ||
            v.some((x) => x !== kvValue(r, l, kind))
          ) {
            errors.push(
              `request ${r} layer ${l} ${kind ? 'values' : 'keys'}: wrong ${kv.dtype} [${kv.shape}] or contents`,
            );
          }
          kv.dispose();
          checked++;
        }
      }
      const hidden = (await pipe.recvTensor())!;
      if (((await hidden.toArray()) as Float32Array).some((x) => x !== r))
        errors.push(`request ${r}: hidden state differs`);
    }
    if (ctx.rank === 0) await pipe.sendTensor(null);
    else if ((await pipe.recvTensor()) !== null) errors.push('expected the null that ends the stream');
    return { rank: ctx.rank, checked, errors };
  } finally {
    await pipe.close();
  }
}
