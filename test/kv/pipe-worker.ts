// Rank side of the NcclPipe tests (CPU launch tests and the GPU test): two ranks, one pipe.
import { NcclPipe } from '../../src/kv/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor } from '../../src/tensor/index.ts';
import { prng } from '../prng.ts';

let pipe: NcclPipe | null = null;

/** Opens this rank's end of a 2-rank pipe on the group's device. */
export async function open(ctx: RankContext, port: number, bufferSizeBytes = 1e9): Promise<string> {
  pipe = await NcclPipe.create({
    localRank: ctx.localRank,
    kvRank: ctx.rank,
    kvParallelSize: 2,
    kvIp: '127.0.0.1',
    kvPort: port,
    device: ctx.device,
    bufferSizeBytes,
    storeTimeoutMs: 20_000,
    abortSignal: ctx.abortSignal,
  });
  return pipe.device;
}

export async function close(): Promise<void> {
  await pipe?.close();
  pipe = null;
}

async function values(t: Tensor | null): Promise<{ shape: number[]; values: number[] } | null> {
  return t === null ? null : { shape: [...t.shape], values: Array.from((await t.toArray()) as Float32Array) };
}

/** vLLM's test: rank 0 sends [1] then [[2,3,4,8]] and receives; rank 1 receives both, then sends them back. */
export async function roundTrip(ctx: RankContext) {
  const p = pipe!;
  if (ctx.rank === 0) {
    await p.sendTensor(Tensor.fromArray([1], { device: ctx.device }));
    await p.sendTensor(Tensor.fromArray([[2, 3, 4, 8]], { device: ctx.device }));
    return [await values(await p.recvTensor()), await values(await p.recvTensor())];
  }
  const a = await p.recvTensor();
  const b = await p.recvTensor();
  await p.sendTensor(a);
  await p.sendTensor(b);
  return [await values(a), await values(b)];
}

function meanStd(v: ArrayLike<number>): [number, number] {
  let m = 0;
  for (let i = 0; i < v.length; i++) m += v[i];
  m /= v.length;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i] - m) ** 2;
  return [m, Math.sqrt(s / Math.max(1, v.length - 1))];
}

/**
 * vLLM's stress test: `iters` iterations; the sender alternates by iteration and sends
 * a triple (tensor, its mean, its std as 0-d tensors), or (null, null, null) 5% of the
 * time; the receiver checks the mean and std of what arrived against the ones sent.
 */
export async function stress(ctx: RankContext, iters: number) {
  const p = pipe!;
  const rand = prng(42); // the same stream on both ranks
  let checked = 0;
  let nulls = 0;
  for (let i = 0; i < iters; i++) {
    const isNull = rand() < 0.05;
    const n = 1 + Math.floor(rand() * 2000);
    const data = Float32Array.from({ length: n }, () => rand() * 2 - 1);
    if (i % 2 === ctx.rank) {
      if (isNull) {
        for (let k = 0; k < 3; k++) await p.sendTensor(null);
      } else {
        const [m, s] = meanStd(data);
        await p.sendTensor(Tensor.fromArray(data, { shape: [n], device: ctx.device }));
        await p.sendTensor(Tensor.fromArray([m], { shape: [], dtype: 'float64', device: ctx.device }));
        await p.sendTensor(Tensor.fromArray([s], { shape: [], dtype: 'float64', device: ctx.device }));
      }
    } else {
      const [x, mean, std] = [await p.recvTensor(), await p.recvTensor(), await p.recvTensor()];
      if (isNull) {
        if (x !== null || mean !== null || std !== null) throw new Error(`iteration ${i}: expected three nulls`);
        nulls++;
        continue;
      }
      if (x === null || mean === null || std === null)
        throw new Error(`iteration ${i}: a null where a tensor was sent`);
      if (mean.shape.length !== 0 || x.shape[0] !== n)
        throw new Error(`iteration ${i}: shapes [${x.shape}] / [${mean.shape}]`);
      const [m, s] = meanStd((await x.toArray()) as Float32Array);
      const [gm, gs] = [
        Number(((await mean.toArray()) as Float64Array)[0]),
        Number(((await std.toArray()) as Float64Array)[0]),
      ];
      if (Math.abs(m - gm) > 1e-9 || Math.abs(s - gs) > 1e-9)
        throw new Error(`iteration ${i}: mean/std ${m}/${s} vs sent ${gm}/${gs}`);
      checked++;
    }
  }
  return { checked, nulls };
}

/**
 * Back-pressure: rank 0 sends 16 tensors of 256 KiB (4 MiB) through a 1 MiB buffer while
 * rank 1 starts receiving only after `delayMs`. Rank 0 reports the most bytes it ever
 * had in flight and when each sendTensor returned.
 */
export async function backPressure(ctx: RankContext, delayMs: number) {
  const p = pipe!;
  const t0 = performance.now();
  if (ctx.rank === 0) {
    const returned: number[] = [];
    let most = 0;
    for (let i = 0; i < 16; i++) {
      await p.sendTensor(Tensor.full([64 * 1024], i, { dtype: 'float32', device: ctx.device }));
      most = Math.max(most, p.bytesInFlight);
      returned.push(performance.now() - t0);
    }
    return { most, returned };
  }
  await new Promise((r) => setTimeout(r, delayMs));
  const got: number[] = [];
  for (let i = 0; i < 16; i++) got.push(((await (await p.recvTensor())!.toArray()) as Float32Array)[100]);
  return { got };
}

/** Rank 1 exits after 20 items; rank 0 keeps sending and records the error it gets in the store. */
export async function killReceiver(ctx: RankContext) {
  const p = pipe!;
  if (ctx.rank === 1) {
    for (let i = 0; i < 20; i++) await p.recvTensor();
    process.exit(9);
  }
  try {
    for (let i = 0; ; i++) await p.sendTensor(Tensor.full([1024], i, { dtype: 'float32', device: ctx.device }));
  } catch (err) {
    await ctx.store.set('kv/sender', `${(err as Error).name}: ${(err as Error).message}`);
  }
}
