// Rank side of the NCCL collectives sweep, timed as nccl-tests times it: warm-up calls,
// a barrier, then a host clock around 50 operations enqueued back to back and one wait
// for the stream, divided by 50 (the median of several such loops). The calls go through gpugroup's public,
// out-of-place operations, so the host cost of each call is in the figure. At world
// size 1 the operations run on a one-rank communicator (singleRankOps): the whole op
// path on one GPU, where vLLM's GroupCoordinator would return the input.
import { NcclDataType, NcclRedOp, cuda, cudaErrorNotReady, nccl } from '../../native/index.ts';
import { type DeviceCommunicator, NcclCommunicator } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor, currentStream } from '../../src/tensor/index.ts';

export type SweepOp = 'all_reduce' | 'broadcast' | 'all_gather' | 'reduce_scatter' | 'send_recv';

/** busbw factor per op (nccl-tests' PERFORMANCE.md). */
export function busFactor(op: SweepOp, n: number): number {
  if (op === 'all_reduce') return (2 * (n - 1)) / n;
  if (op === 'all_gather' || op === 'reduce_scatter') return (n - 1) / n;
  return 1;
}

let oneRank: Promise<NcclCommunicator> | null = null;

/** The world communicator, or at world size 1 a one-rank communicator made on first use. */
function communicatorOf(ctx: RankContext): Promise<DeviceCommunicator> {
  if (ctx.communicator) return Promise.resolve(ctx.communicator);
  if (ctx.backend !== 'nccl') throw new Error('world size 1 needs the NCCL backend');
  oneRank ??= NcclCommunicator.create({
    group: ctx.processGroup,
    device: ctx.device,
    groupName: 'one-rank',
    timeoutMs: ctx.timeoutMs,
    singleRankOps: true,
  });
  return oneRank;
}

/** Waits for the current stream as nccl-tests does: a cudaStreamQuery spin, no event-loop turn. */
function spinUntilIdle(): void {
  const rt = cuda();
  const stream = currentStream().handle;
  while (rt.cudaStreamQuery(stream) === cudaErrorNotReady);
}

/** Microseconds for `body` plus the stream's drain, on the host clock (the CPU backend: body's own wait). */
async function timed(ctx: RankContext, comm: DeviceCommunicator, body: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await body();
  if (ctx.backend === 'nccl') spinUntilIdle();
  else await comm.synchronize();
  const us = (performance.now() - t0) * 1000;
  await comm.synchronize(); // the watchdog's view of the finished work (untimed)
  return us;
}

/**
 * One op at one size. `bytes` follows nccl-tests: the whole buffer (all-gather: the
 * output; reduce-scatter: the input). Returns microseconds per op on this rank, and with
 * `raw` (NCCL, one rank) also the same loop of koffi NCCL calls on preallocated buffers,
 * as nccl-tests calls them. The two loops take turns rep by rep, so that both sample the
 * same moments of the host, whose own NCCL cost drifts by µs over seconds.
 */
async function measure(
  ctx: RankContext,
  comm: DeviceCommunicator,
  op: SweepOp,
  bytes: number,
  iters: number,
  reps: number,
  raw = false,
): Promise<{ us: number; rawUs: number | null }> {
  const n = ctx.worldSize;
  const piece = Math.max(1, Math.floor(bytes / 4 / n)); // per-rank elements of all-gather / reduce-scatter
  const whole = Math.max(1, Math.floor(bytes / 4));
  const length = op === 'all_gather' ? piece : op === 'reduce_scatter' ? piece * n : whole;
  const x = Tensor.full([length], 1, { dtype: 'float32', device: ctx.device });
  const outLength = op === 'all_gather' ? piece * n : op === 'reduce_scatter' ? piece : whole;
  const out = raw ? Tensor.empty([outLength], { dtype: 'float32', device: ctx.device }) : null;
  // One loop per op, each call awaited as a user would, outputs disposed at once: freed
  // stream-ordered, they come back from the cache on the next call.
  const loop = async (k: number): Promise<void> => {
    if (op === 'all_reduce') for (let i = 0; i < k; i++) (await comm.allReduce(x)).dispose();
    else if (op === 'broadcast') for (let i = 0; i < k; i++) await comm.broadcast(x, 0);
    else if (op === 'all_gather') for (let i = 0; i < k; i++) (await comm.allGather(x, 0)).dispose();
    else if (op === 'reduce_scatter') for (let i = 0; i < k; i++) (await comm.reduceScatter(x, 0)).dispose();
    else if (ctx.rank === 0) for (let i = 0; i < k; i++) await comm.send(x, 1);
    else if (ctx.rank === 1) for (let i = 0; i < k; i++) (await comm.recv(x.shape, 'float32', 0)).dispose();
  };
  const loops = out ? [loop, rawLoop(comm as NcclCommunicator, op, x, out, piece)] : [loop];
  // Warm-up: nccl-tests runs -w 5 C calls; JS reaches its optimized code only after
  // thousands of calls of each op (on the stand-in library, per-op time settles after
  // ~8,000 calls, with compile pauses before), and the pool's blocks are made then too.
  // At small sizes: 2,000 calls and at least 150 ms (the first size of each op meets its
  // code cold: ~20,000 calls at a few µs each). With peers, every rank must make the same
  // number of calls (a collective one rank issues more often never completes): 8,000.
  const alone = ctx.worldSize === 1;
  for (const body of loops) {
    const warmUntil = performance.now() + (reps > 5 && alone ? 150 : 0);
    await body(reps > 5 ? (alone ? 2000 : 8000) : iters);
    while (performance.now() < warmUntil) await body(100);
    await comm.synchronize();
  }
  await ctx.processGroup.barrier();
  // nccl-tests' method (-n iters): `iters` calls enqueued back to back, one wait for the
  // stream, the host time divided by `iters`; here `reps` such loops (the stream drained
  // between them, untimed), and their median.
  const per: number[][] = loops.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let k = 0; k < loops.length; k++) {
      const which = (r + k) % loops.length; // neither loop always runs first
      per[which].push((await timed(ctx, comm, () => loops[which](iters))) / iters);
    }
    if (reps > 1) await ctx.processGroup.barrier();
  }
  x.dispose();
  out?.dispose();
  return { us: median(per[0]), rawUs: out ? median(per[1]) : null };
}

/** `k` raw koffi NCCL calls of `op` from `x` into `out` on a one-rank communicator (float32, sum). */
function rawLoop(
  comm: NcclCommunicator,
  op: SweepOp,
  x: Tensor,
  out: Tensor,
  piece: number,
): (k: number) => Promise<void> {
  const lib = nccl();
  const stream = currentStream().handle;
  const [send, recv, c, f, sum] = [x.dataPtr, out.dataPtr, comm.comm, NcclDataType.ncclFloat32, NcclRedOp.sum];
  const call =
    op === 'all_reduce'
      ? () => lib.ncclAllReduce(send, recv, x.numel, f, sum, c, stream)
      : op === 'all_gather'
        ? () => lib.ncclAllGather(send, recv, piece, f, c, stream)
        : () => lib.ncclReduceScatter(send, recv, piece, f, sum, c, stream);
  return async (k) => {
    for (let i = 0; i < k; i++) call();
  };
}

/** The sweep of nccl-tests sizes (8 B × 4^k) for `ops`; records come from rank 0 (send_recv: rank 1). */
export async function sweep(ctx: RankContext, args: { ops: SweepOp[]; minBytes: number; maxBytes: number }) {
  const comm = await communicatorOf(ctx);
  const records: Record<string, unknown>[] = [];
  for (const op of args.ops) {
    if (op === 'send_recv' && ctx.worldSize < 2) continue;
    for (let bytes = args.minBytes; bytes <= args.maxBytes; bytes *= 4) {
      // NCCL: nccl-tests' -n 50 per loop (the baselines' setting), 20 loops up to 64 KiB
      // (host-bound sizes, where one loop is ~0.5 ms and noisy), 5 above.
      const iters = ctx.backend === 'nccl' ? 50 : bytes >= 1 << 22 ? 5 : 50;
      const reps = ctx.backend === 'nccl' ? (bytes <= 1 << 16 ? 20 : 5) : 1;
      // Beside it, at one rank, the same loop of raw koffi NCCL calls: what this machine's
      // NCCL costs per op right now, so that gpugroup's own cost reads apart from the
      // drift between machines and stages.
      const raw = comm instanceof NcclCommunicator && RAW_OPS.has(op) && ctx.worldSize === 1 && bytes <= RAW_MAX_BYTES;
      const { us, rawUs } = await measure(ctx, comm, op, bytes, iters, reps, raw);
      const reporter = op === 'send_recv' ? 1 : 0;
      if (ctx.rank === reporter) records.push(sweepRecord('gpugroup', ctx, op, bytes, us));
      if (rawUs !== null) records.push(sweepRecord('raw-koffi', ctx, op, bytes, rawUs));
    }
  }
  return records;
}

/** The ops and sizes of the raw koffi loops at world 1: the host-bound ones that gpugroup's goal covers. */
const RAW_OPS = new Set<SweepOp>(['all_reduce', 'all_gather', 'reduce_scatter']);
const RAW_MAX_BYTES = 1 << 16;

function sweepRecord(impl: string, ctx: RankContext, op: SweepOp, bytes: number, us: number): Record<string, unknown> {
  const busbw = +((bytes / us / 1e3) * busFactor(op, ctx.worldSize)).toFixed(2);
  return { impl, backend: ctx.backend, op, world: ctx.worldSize, graph: false, bytes, us: +us.toFixed(2), busbw };
}

/** Graph-captured all-reduce sizes: nccl-tests' -b 8 -e 1M -f 4 and the torch baseline's. */
const GRAPH_SIZES = [8, 32, 128, 512, 1024, 2048, 8192, 32768, 65536, 131072, 524288, 1048576];

/**
 * Graph-captured all-reduce, timed as nccl-tests -G times it: `perGraph` all-reduces
 * captured in one CUDA graph, the graph launched `launches` times back to back on the
 * host clock, one wait, divided by perGraph × launches. Records from rank 0.
 */
export async function graphSweep(ctx: RankContext, args: { perGraph?: number; launches?: number; maxBytes?: number }) {
  const comm = await communicatorOf(ctx);
  const perGraph = args.perGraph ?? 100;
  const launches = args.launches ?? 20;
  const records: Record<string, unknown>[] = [];
  for (const bytes of GRAPH_SIZES) {
    if (bytes > (args.maxBytes ?? Infinity)) break;
    const x = Tensor.full([Math.max(1, Math.floor(bytes / 4))], 1, { dtype: 'float32', device: ctx.device });
    const graph = await ctx.world.graphCapture(async () => {
      for (let i = 0; i < perGraph; i++) await comm.allReduce(x);
    });
    graph.replay();
    spinUntilIdle();
    await ctx.processGroup.barrier();
    const t0 = performance.now();
    for (let i = 0; i < launches; i++) graph.replay();
    spinUntilIdle();
    const us = ((performance.now() - t0) * 1000) / (perGraph * launches);
    graph.dispose();
    x.dispose();
    const busbw = +((bytes / us / 1e3) * busFactor('all_reduce', ctx.worldSize)).toFixed(2);
    if (ctx.rank === 0)
      records.push({
        impl: 'gpugroup',
        op: 'all_reduce',
        world: ctx.worldSize,
        graph: true,
        bytes,
        us: +us.toFixed(2),
        busbw,
      });
  }
  return records;
}

/**
 * Host cost of one call: all-reduces of 8 bytes enqueued back to back, timed on the
 * host, through gpugroup's allReduce and through the raw koffi ncclAllReduce with
 * preallocated buffers (both include NCCL's own enqueue work), plus gpugroup's output
 * allocation and free alone, each warmed up first and timed in batches (see timePhases).
 */
export async function hostCost(ctx: RankContext, args: { iters: number; batch?: number; rounds?: number }) {
  const comm = (await communicatorOf(ctx)) as NcclCommunicator;
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
  const results = await timePhases(phases, {
    iters: args.iters,
    batch,
    rounds: args.rounds ?? 3,
    drain: () => comm.synchronize(),
    beforeRound: () => ctx.processGroup.barrier(),
    sameCallsEverywhere: ctx.worldSize > 1,
  });
  x.dispose();
  out.dispose();
  return ctx.rank === 0 ? results : null;
}

/**
 * Untimed calls of each phase before its first timed batch: at least this many and, at
 * one rank, WARM_PHASE_MS.
 */
const WARM_PHASE_CALLS = 8000;
const WARM_PHASE_MS = 150;

/**
 * Host µs per call of each phase (a body making `n` calls): `rounds` rounds of `iters`
 * calls per phase, in batches of `batch` with `drain()` between batches (untimed), so
 * that a slow device never backs the host up; the median over batches of the mean per
 * call (a batch the OS preempted does not move it). The phases take turns batch by
 * batch, so that they sample the same moments: the host's own NCCL cost drifts by µs
 * over seconds, and phases timed one after the other would carry that drift into their
 * difference. Each phase first runs
 * untimed, as the sweep's ops do, until its code is compiled (JS reaches optimized code
 * only after thousands of calls: timed cold, an allReduce's host cost reads ~3× high).
 * `sameCallsEverywhere` (phases of collectives, with peers): the warm-up is a count
 * alone, the same on every rank, not also a time that each rank reads on its own clock.
 */
export async function timePhases(
  phases: Record<string, (n: number) => Promise<void> | void>,
  opts: {
    iters: number;
    batch: number;
    rounds: number;
    drain: () => Promise<void>;
    beforeRound?: () => Promise<void>;
    sameCallsEverywhere?: boolean;
  },
): Promise<Record<string, number>> {
  for (const phase of Object.values(phases)) {
    const until = performance.now() + (opts.sameCallsEverywhere ? 0 : WARM_PHASE_MS);
    for (let done = 0; done < WARM_PHASE_CALLS || performance.now() < until; done += opts.batch) {
      await phase(opts.batch);
      await opts.drain();
    }
  }
  const entries = Object.entries(phases);
  const samples: Record<string, number[]> = Object.fromEntries(entries.map(([name]) => [name, []]));
  for (let round = 0; round < opts.rounds; round++) {
    await opts.beforeRound?.();
    for (let done = 0, turn = 0; done < opts.iters; done += opts.batch, turn++) {
      const n = Math.min(opts.batch, opts.iters - done);
      // Each batch starts with the next phase in turn: none always runs first.
      for (let k = 0; k < entries.length; k++) {
        const [name, phase] = entries[(turn + k) % entries.length];
        const t0 = performance.now();
        await phase(n);
        samples[name].push(((performance.now() - t0) * 1000) / n);
        await opts.drain();
      }
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, list]) => [name, median(list)]));
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
