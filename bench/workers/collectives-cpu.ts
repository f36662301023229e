// Rank side of the CPU collectives sweep: warm-up, barrier, then `iters` back-to-back
// operations through the public, out-of-place DeviceCommunicator API (so the output
// allocation of every op is in the figure, as a user pays it), timed on the host.
import { CpuCommunicator, type CpuCommunicatorOptions, type DeviceCommunicator } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor } from '../../src/tensor/index.ts';

export type CpuSweepOp = 'all_reduce' | 'broadcast' | 'all_gather' | 'reduce_scatter' | 'send_recv';

/** busbw factor per op (nccl-tests' PERFORMANCE.md). */
export function busFactor(op: CpuSweepOp, n: number): number {
  if (op === 'all_reduce') return (2 * (n - 1)) / n;
  if (op === 'all_gather' || op === 'reduce_scatter') return (n - 1) / n;
  return 1;
}

/** Iterations per size: enough to average out scheduling noise on a small box, bounded in time. */
function itersFor(bytes: number): number {
  if (bytes <= 64 << 10) return 200;
  if (bytes <= 1 << 20) return 40;
  if (bytes <= 8 << 20) return 10;
  return 4;
}

/**
 * One op at one size; `bytes` follows nccl-tests (all-gather: the output; reduce-scatter:
 * the input). Returns microseconds per op on this rank.
 */
async function measure(
  ctx: RankContext,
  comm: DeviceCommunicator,
  op: CpuSweepOp,
  bytes: number,
  iters: number,
): Promise<number> {
  const n = ctx.worldSize;
  const piece = Math.max(1, Math.floor(bytes / 4 / n));
  const whole = Math.max(1, Math.floor(bytes / 4));
  const length = op === 'all_gather' ? piece : op === 'reduce_scatter' ? piece * n : whole;
  const x = Tensor.full([length], 1, { dtype: 'float32', device: 'cpu' });
  let run: () => Promise<unknown>;
  if (op === 'all_reduce') run = () => comm.allReduce(x);
  else if (op === 'broadcast') run = () => comm.broadcast(x, 0);
  else if (op === 'all_gather') run = () => comm.allGather(x, 0);
  else if (op === 'reduce_scatter') run = () => comm.reduceScatter(x, 0);
  else if (ctx.rank === 0) run = () => comm.send(x, 1);
  else if (ctx.rank === 1) run = () => comm.recv(x.shape, 'float32', 0);
  else run = () => Promise.resolve();
  for (let i = 0; i < Math.min(3, iters); i++) await run();
  await comm.synchronize();
  await ctx.processGroup.barrier();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await run();
  await comm.synchronize();
  return ((performance.now() - t0) * 1000) / iters;
}

/** Sweep arguments; `comm` builds a dedicated communicator with these options (tuning runs). */
export interface CpuSweepArgs {
  ops: CpuSweepOp[];
  minBytes: number;
  maxBytes: number;
  comm?: Partial<Omit<CpuCommunicatorOptions, 'group' | 'groupName'>>;
}

/** Sizes 8 B × 4^k from minBytes, plus maxBytes itself when the steps miss it. */
export function sizes(minBytes: number, maxBytes: number): number[] {
  const out: number[] = [];
  for (let b = minBytes; b <= maxBytes; b *= 4) out.push(b);
  if (out[out.length - 1] !== maxBytes) out.push(maxBytes);
  return out;
}

/** Every rank's time per op for each (op, size); the coordinator keeps the slowest rank. */
export async function sweep(ctx: RankContext, args: CpuSweepArgs) {
  const comm = args.comm
    ? await CpuCommunicator.create({ ...args.comm, group: ctx.processGroup, groupName: 'bench-cpu' })
    : ctx.communicator!;
  const out: { op: CpuSweepOp; bytes: number; us: number; transport: string }[] = [];
  try {
    for (const op of args.ops) {
      for (const bytes of sizes(args.minBytes, args.maxBytes)) {
        const us = await measure(ctx, comm, op, bytes, itersFor(bytes));
        out.push({ op, bytes, us, transport: (comm as CpuCommunicator).transport });
      }
    }
  } finally {
    if (args.comm) await comm.destroy();
  }
  return out;
}
