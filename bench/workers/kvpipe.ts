// Rank side of `npm run bench -- kvpipe`: rank 0 sends through an NcclPipe, rank 1 receives.
import { NcclPipe } from '../../src/kv/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor, currentStream } from '../../src/tensor/index.ts';
import { percentiles } from '../stats.ts';

let pipe: NcclPipe | null = null;
/** Tensors sent last, freed after the pipe closed. */
const leftovers: Tensor[] = [];

export async function open(ctx: RankContext, port: number): Promise<void> {
  pipe = await NcclPipe.create({
    localRank: ctx.localRank,
    kvRank: ctx.rank,
    kvParallelSize: 2,
    kvIp: '127.0.0.1',
    kvPort: port,
    // The rank's own device ('cuda' would mean cuda:<local rank>, wrong where ranks share one GPU).
    device: ctx.device,
    bufferSizeBytes: 4 * 2 ** 30,
    storeTimeoutMs: 60_000,
    abortSignal: ctx.abortSignal,
  });
}

/** `count` tensors of `bytes` from rank 0 to rank 1; seconds from the first send to the last tensor in. */
export async function stream(ctx: RankContext, args: { bytes: number; count: number }): Promise<number> {
  const p = pipe!;
  const t = ctx.rank === 0 ? Tensor.zeros([args.bytes], { dtype: 'uint8', device: ctx.device }) : null;
  const run = async () => {
    for (let i = 0; i < args.count; i++) {
      if (t) await p.sendTensor(t);
      else (await p.recvTensor())!.dispose();
    }
  };
  const drained = () => (ctx.device === 'cpu' ? Promise.resolve() : currentStream().synchronize());
  await run(); // warm-up
  await drained();
  await ctx.processGroup.barrier();
  const t0 = performance.now();
  await run();
  // The last tensor is in once the receiving stream has it (recvTensor returns at enqueue).
  await drained();
  const s = (performance.now() - t0) / 1000;
  await ctx.processGroup.barrier();
  t?.dispose();
  return s;
}

/**
 * p50 of one 4 KiB tensor (with its metadata) from rank 0 to rank 1 and back, halved;
 * with `metadataOnly`, of a null item (the metadata path alone).
 */
export async function small(ctx: RankContext, iters: number, metadataOnly = false) {
  const p = pipe!;
  const t = metadataOnly ? null : Tensor.zeros([1024], { dtype: 'float32', device: ctx.device });
  const lat: number[] = [];
  // Rank 1 sends back what it received, so it may free that tensor only once the send
  // has read it: after its next receive, which the pipe's stream orders after that
  // send, and which the current stream waits for.
  let echoed: Tensor | null = null;
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    if (ctx.rank === 0) {
      await p.sendTensor(t);
      (await p.recvTensor())?.dispose();
    } else {
      const got = await p.recvTensor();
      echoed?.dispose();
      await p.sendTensor(got);
      echoed = got;
    }
    lat.push(((performance.now() - t0) * 1000) / 2);
  }
  // The last one may still be in flight: freed once the pipe has closed (close drains it).
  if (echoed) leftovers.push(echoed);
  t?.dispose();
  return percentiles(lat.slice(Math.floor(iters / 10)));
}

/**
 * Host time per tensor on each side: rank 0 queues `count` tensors of `bytes` (the time
 * of its sendTensor calls, per call); once they are all queued, rank 1 takes them (the
 * time of its recvTensor calls, per call, the last one's data waited for on the device).
 * Medians of `rounds` rounds, in µs.
 */
export async function hostPerTensor(ctx: RankContext, args: { bytes: number; count: number; rounds: number }) {
  const p = pipe!;
  const t = ctx.rank === 0 ? Tensor.zeros([args.bytes], { dtype: 'uint8', device: ctx.device }) : null;
  const perCall: number[] = [];
  for (let round = 0; round <= args.rounds; round++) {
    await ctx.processGroup.barrier();
    const t0 = performance.now();
    if (t) {
      for (let i = 0; i < args.count; i++) await p.sendTensor(t);
    }
    const sent = performance.now();
    await ctx.processGroup.barrier();
    const r0 = performance.now();
    if (!t) {
      let last: Tensor | null = null;
      for (let i = 0; i < args.count; i++) {
        last?.dispose();
        last = await p.recvTensor();
      }
      if (ctx.device !== 'cpu') await currentStream().synchronize();
      last?.dispose();
    }
    const received = performance.now();
    // Round 0 warms up.
    if (round > 0) perCall.push(((t ? sent - t0 : received - r0) * 1000) / args.count);
    // The sender's tensor is read by sends that may still be in flight: drained before reuse.
    await ctx.processGroup.barrier();
  }
  if (t) {
    if (ctx.device !== 'cpu') await currentStream().synchronize();
  }
  await ctx.processGroup.barrier();
  if (t) leftovers.push(t);
  perCall.sort((a, b) => a - b);
  return { side: ctx.rank === 0 ? 'send' : 'recv', us: +perCall[Math.floor(perCall.length / 2)].toFixed(2) };
}

export async function close(): Promise<void> {
  await pipe?.close();
  pipe = null;
  for (const t of leftovers.splice(0)) t.dispose();
}

/**
 * The reference without the pipe: the same traffic as `stream` and `small` as plain
 * send/recv on the group's own communicator (no metadata, no pipe bookkeeping).
 * Returns { streamS, smallP50 }: seconds for `count` tensors of `bytes`, p50 one way of 4 KiB.
 */
export async function raw(ctx: RankContext, args: { bytes: number; count: number; iters: number }) {
  const comm = ctx.communicator!;
  const big = Tensor.zeros([args.bytes], { dtype: 'uint8', device: ctx.device });
  const run = async () => {
    for (let i = 0; i < args.count; i++) {
      if (ctx.rank === 0) await comm.send(big, 1);
      else (await comm.recv([args.bytes], 'uint8', 0)).dispose();
    }
    await comm.synchronize();
  };
  await run();
  await ctx.processGroup.barrier();
  const t0 = performance.now();
  await run();
  const streamS = (performance.now() - t0) / 1000;
  await ctx.processGroup.barrier();
  big.dispose();
  const t = Tensor.zeros([1024], { dtype: 'float32', device: ctx.device });
  const lat: number[] = [];
  for (let i = 0; i < args.iters; i++) {
    const t0 = performance.now();
    if (ctx.rank === 0) {
      await comm.send(t, 1);
      (await comm.recv([1024], 'float32', 1)).dispose();
      await comm.synchronize();
    } else {
      const got = await comm.recv([1024], 'float32', 0);
      await comm.send(got, 0);
      await comm.synchronize();
      got.dispose();
    }
    lat.push(((performance.now() - t0) * 1000) / 2);
  }
  t.dispose();
  return { streamS, smallP50: percentiles(lat.slice(Math.floor(args.iters / 10))).p50 };
}
