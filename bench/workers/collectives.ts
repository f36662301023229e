// Rank side of the NCCL collectives sweep: nccl-tests' method (warm-up, barrier, then
// CUDA events around `iters` back-to-back operations on the current stream), through
// gpugroup's public, out-of-place operations, so the host cost of each call is in it.
import { NcclDataType, NcclRedOp, nccl } from '../../native/index.ts';
import type { DeviceCommunicator, NcclCommunicator } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { CudaEvent, Tensor, currentStream } from '../../src/tensor/index.ts';

export type SweepOp = 'all_reduce' | 'broadcast' | 'all_gather' | 'reduce_scatter' | 'send_recv';

/** busbw factor per op (nccl-tests' PERFORMANCE.md). */
export function busFactor(op: SweepOp, n: number): number {
  if (op === 'all_reduce') return (2 * (n - 1)) / n;
  if (op === 'all_gather' || op === 'reduce_scatter') return (n - 1) / n;
  return 1;
}

/** Elapsed microseconds of `body`, on the device's clock (CUDA events) or the host's. */
async function timed(ctx: RankContext, comm: DeviceCommunicator, body: () => Promise<void>): Promise<number> {
  if (ctx.backend !== 'nccl') {
    const t0 = performance.now();
    await body();
    await comm.synchronize();
    return (performance.now() - t0) * 1000;
  }
  const start = new CudaEvent(true).record();
  await body();
  const end = new CudaEvent(true).record();
  await comm.synchronize();
  const us = end.elapsedMsSince(start) * 1000;
  start.dispose();
  end.dispose();
  return us;
}

/**
 * One op at one size. `bytes` follows nccl-tests: the whole buffer (all-gather: the
 * output; reduce-scatter: the input). Returns microseconds per op on this rank.
 */
async function measure(
  ctx: RankContext,
  comm: DeviceCommunicator,
  op: SweepOp,
  bytes: number,
  iters: number,
): Promise<number> {
  const n = ctx.worldSize;
  const piece = Math.max(1, Math.floor(bytes / 4 / n)); // per-rank elements of all-gather / reduce-scatter
  const whole = Math.max(1, Math.floor(bytes / 4));
  const length = op === 'all_gather' ? piece : op === 'reduce_scatter' ? piece * n : whole;
  const x = Tensor.full([length], 1, { dtype: 'float32', device: ctx.device });
  let run: () => Promise<unknown>;
  // Outputs are disposed at once: freed stream-ordered, they come back from the pool.
  if (op === 'all_reduce') run = () => comm.allReduce(x).then((o) => o.dispose());
  else if (op === 'broadcast') run = () => comm.broadcast(x, 0);
  else if (op === 'all_gather') run = () => comm.allGather(x, 0).then((o) => o.dispose());
  else if (op === 'reduce_scatter') run = () => comm.reduceScatter(x, 0).then((o) => o.dispose());
  else if (ctx.rank === 0) run = () => comm.send(x, 1);
  else if (ctx.rank === 1) run = () => comm.recv(x.shape, 'float32', 0).then((o) => o.dispose());
  else run = () => Promise.resolve();
  const loop = async (k: number) => {
    for (let i = 0; i < k; i++) await run();
  };
  await loop(Math.min(20, iters)); // JIT and pool warm-up (nccl-tests: -w 5 of C calls)
  await comm.synchronize();
  await ctx.processGroup.barrier();
  const us = await timed(ctx, comm, () => loop(iters));
  x.dispose();
  return us / iters;
}

/** The sweep of nccl-tests sizes (8 B × 4^k) for `ops`; records come from rank 0 (send_recv: rank 1). */
export async function sweep(ctx: RankContext, args: { ops: SweepOp[]; minBytes: number; maxBytes: number }) {
  const comm = ctx.communicator!;
  const records: Record<string, unknown>[] = [];
  for (const op of args.ops) {
    if (op === 'send_recv' && ctx.worldSize < 2) continue;
    for (let bytes = args.minBytes; bytes <= args.maxBytes; bytes *= 4) {
      // Small sizes are host-bound: 200 back-to-back calls average out a minor GC.
      const iters = ctx.backend === 'nccl' ? (bytes >= 1 << 26 ? 20 : 200) : bytes >= 1 << 22 ? 5 : 50;
      const us = await measure(ctx, comm, op, bytes, iters);
      const reporter = op === 'send_recv' ? 1 : 0;
      if (ctx.rank === reporter) {
        const busbw = +((bytes / us / 1e3) * busFactor(op, ctx.worldSize)).toFixed(2);
        records.push({
          impl: 'gpugroup',
          backend: ctx.backend,
          op,
          world: ctx.worldSize,
          graph: false,
          bytes,
          us: +us.toFixed(2),
          busbw,
        });
      }
    }
  }
  return records;
}

/**
 * Host cost of one call: all-reduces of 8 bytes enqueued back to back, timed on the
 * host, through gpugroup's allReduce and through the raw koffi ncclAllReduce with
 * preallocated buffers (both include NCCL's own enqueue work), plus gpugroup's output
 * allocation and free alone. Calls go in batches of `batch` with the stream drained
 * between batches, untimed, so that a slow device (a one-GPU rehearsal) never backs
 * the host up; the figure is the best round's mean per call.
 */
export async function hostCost(ctx: RankContext, args: { iters: number; batch?: number; rounds?: number }) {
  const comm = ctx.communicator as NcclCommunicator;
  const x = Tensor.full([2], 1, { dtype: 'float32', device: ctx.device });
  const out = Tensor.empty([2], { dtype: 'float32', device: ctx.device });
  const lib = nccl();
  const stream = currentStream().handle;
  const batch = args.batch ?? args.iters;
  const send = x.dataPtr;
  const recv = out.dataPtr;
  const phases: Record<string, (n: number) => Promise<void> | void> = {
    raw: (n) => {
      for (let i = 0; i < n; i++)
        lib.ncclAllReduce(send, recv, 2, NcclDataType.ncclFloat32, NcclRedOp.sum, comm.comm, stream);
    },
    gpugroup: async (n) => {
      for (let i = 0; i < n; i++) (await comm.allReduce(x)).dispose();
    },
    allocFree: (n) => {
      for (let i = 0; i < n; i++) Tensor.empty([2], { dtype: 'float32', device: ctx.device }).dispose();
    },
  };
  const results: Record<string, number> = {};
  for (let round = 0; round < (args.rounds ?? 3); round++) {
    for (const [name, phase] of Object.entries(phases)) {
      await ctx.processGroup.barrier();
      let ms = 0;
      for (let done = 0; done < args.iters; done += batch) {
        const t0 = performance.now();
        await phase(Math.min(batch, args.iters - done));
        ms += performance.now() - t0;
        await comm.synchronize();
      }
      results[name] = Math.min(results[name] ?? Infinity, (ms * 1000) / args.iters);
    }
  }
  x.dispose();
  out.dispose();
  return ctx.rank === 0 ? results : null;
}
