// Rank side of the coordinator bench: vLLM's broadcast_tensor_dict timed as the torch
// baseline times it (barrier, then the source builds the dict of device tensors and a
// scalar, everyone broadcasts and synchronizes; per-rank wall time), after untimed
// warm-up iterations (JIT, the broadcast queue's creation, the block cache).
import { deserialize, serialize } from 'node:v8';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { receiverWire, senderWire } from '../../src/parallel/dict-wire.ts';
import { Tensor } from '../../src/tensor/index.ts';

export async function broadcastTensorDict(ctx: RankContext, args: { tensors: number; iters: number; warmup?: number }) {
  const group = ctx.world;
  const lat: number[] = [];
  const issued: number[] = [];
  const warmup = args.warmup ?? 0;
  for (let it = 0; it < warmup + args.iters; it++) {
    await ctx.world.barrier();
    const t0 = performance.now();
    let dict: Record<string, unknown> | null = null;
    if (group.rankInGroup === 0) {
      dict = { step: it };
      for (let i = 0; i < args.tensors; i++)
        dict[`t${i}`] = Tensor.full([1024], i, { dtype: 'float32', device: ctx.device });
    }
    const got = await group.broadcastTensorDict(dict, 0);
    if (it >= warmup) issued.push((performance.now() - t0) * 1000);
    await ctx.synchronize();
    if (it >= warmup) lat.push((performance.now() - t0) * 1000);
    if (got) for (const v of Object.values(got)) if (v instanceof Tensor) v.dispose();
  }
  lat.sort((a, b) => a - b);
  issued.sort((a, b) => a - b);
  // `issued`: until broadcastTensorDict resolved (metadata in, broadcasts enqueued), before the device sync.
  return { p50: lat[Math.floor(lat.length / 2)], min: lat[0], issuedP50: issued[Math.floor(issued.length / 2)] };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Where broadcastTensorDict's time goes (GPUGROUP_BENCH_PROFILE=1): each part alone,
 * `iters` times, median µs per rank. `barrierExit` is this rank's median barrier exit
 * time minus rank 0's (system clock), the skew every per-iteration figure includes.
 */
export async function profile(ctx: RankContext, args: { tensors: number; iters: number }) {
  const g = ctx.world;
  const n = args.tensors;
  const time = async (fn: () => Promise<unknown> | unknown): Promise<number> => {
    const xs: number[] = [];
    for (let i = 0; i < args.iters; i++) {
      await ctx.world.barrier();
      const t0 = performance.now();
      await fn();
      xs.push((performance.now() - t0) * 1000);
    }
    return +median(xs).toFixed(1);
  };
  const made: Tensor[] = [];
  const full = await time(() => {
    for (let i = 0; i < n; i++) made.push(Tensor.full([1024], i, { dtype: 'float32', device: ctx.device }));
  });
  const empty = await time(() => {
    for (let i = 0; i < n; i++) made.push(Tensor.empty([1024], { dtype: 'float32', device: ctx.device }));
  });
  for (const t of made.splice(0)) t.dispose();
  const sync = await time(() => ctx.synchronize());
  const meta = [
    ['step', 1],
    ...Array.from({ length: n }, (_, i) => [`t${i}`, { __tensor: ['cuda', 'float32', [1024]] }]),
  ];
  const roundTrip = await time(async () => {
    await g.broadcastObject(g.rankInGroup === 0 ? meta : undefined, 0);
    await g.broadcastObject(g.rankInGroup === 1 ? meta : undefined, 1);
  });
  const bufs = Array.from({ length: n }, (_, i) => Tensor.full([1024], i, { dtype: 'float32', device: ctx.device }));
  const comm = g.deviceCommunicator as unknown as {
    groupStart?(): void;
    groupEnd?(): void;
    broadcast(t: Tensor, src: number): Promise<Tensor>;
  };
  const issue = async () => {
    comm.groupStart?.();
    try {
      for (const t of bufs) await comm.broadcast(t, 0);
    } finally {
      comm.groupEnd?.();
    }
  };
  const broadcastIssue = await time(issue);
  await ctx.synchronize();
  const broadcastSynced = await time(async () => {
    await issue();
    await ctx.synchronize();
  });
  const exits: number[] = [];
  for (let i = 0; i < args.iters; i++) {
    await ctx.world.barrier();
    exits.push(performance.timeOrigin + performance.now());
  }
  const all = await ctx.processGroup.allGatherObj(exits);
  const barrierExit = +(median(exits.map((e, i) => e - all[0][i])) * 1000).toFixed(1);
  for (const t of bufs) t.dispose();
  return { full, empty, sync, roundTrip, broadcastIssue, broadcastSynced, barrierExit };
}

/**
 * broadcastTensorDict's steps one by one from group rank 0 with the dict built before
 * the clock starts (GPUGROUP_BENCH_PROFILE=1): median µs from the barrier to the end of
 * each step, per rank.
 */
export async function profileSteps(ctx: RankContext, args: { tensors: number; iters: number }) {
  const g = ctx.world;
  const internals = g as unknown as {
    queueFor(src: number): Promise<{ enqueue(o: unknown): Promise<void>; dequeue<T>(): Promise<T> }>;
  };
  const marks: Record<string, number[]> = {};
  const mark = (name: string, t0: number): void => {
    marks[name] ??= [];
    marks[name].push((performance.now() - t0) * 1000);
  };
  const comm = g.deviceCommunicator as unknown as {
    groupStart?(): void;
    groupEnd?(): void;
    broadcast(t: Tensor, src: number): Promise<Tensor>;
  };
  for (let it = 0; it < args.iters; it++) {
    const dict: Record<string, unknown> = { step: it };
    if (g.rankInGroup === 0)
      for (let i = 0; i < args.tensors; i++)
        dict[`t${i}`] = Tensor.full([1024], i, { dtype: 'float32', device: ctx.device });
    await ctx.world.barrier();
    const t0 = performance.now();
    const q = await internals.queueFor(0);
    let tensors: Tensor[];
    if (g.rankInGroup === 0) {
      const metadata = Object.entries(dict).map(([k, v]) => [
        k,
        v instanceof Tensor ? { __tensor: ['cuda', v.dtype, [...v.shape]] } : v,
      ]);
      mark('split', t0);
      await q.enqueue(metadata);
      mark('queued', t0);
      tensors = Object.values(dict).filter((v): v is Tensor => v instanceof Tensor);
    } else {
      const metadata = await q.dequeue<[string, unknown][]>();
      mark('dequeued', t0);
      tensors = metadata
        .filter(([, v]) => typeof v === 'object' && v !== null)
        .map(() => Tensor.empty([1024], { dtype: 'float32', device: ctx.device }));
      mark('allocated', t0);
    }
    comm.groupStart?.();
    for (const t of tensors) await comm.broadcast(t, 0);
    comm.groupEnd?.();
    mark('issued', t0);
    await ctx.synchronize();
    mark('synced', t0);
    for (const t of tensors) t.dispose();
  }
  return Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, +median(v).toFixed(1)]));
}

/**
 * The real broadcastTensorDict (dict built inside the clock, as the bench does), with
 * the queue's enqueue/dequeue wrapped to timestamp them (GPUGROUP_BENCH_PROFILE=1).
 */
export async function profileReal(ctx: RankContext, args: { tensors: number; iters: number }) {
  const g = ctx.world;
  const q = await (
    g as unknown as {
      queueFor(src: number): Promise<Record<'enqueue' | 'dequeue', (...a: unknown[]) => Promise<unknown>>>;
    }
  ).queueFor(0);
  let t0 = 0;
  const marks: Record<string, number[]> = {};
  const mark = (name: string): void => {
    marks[name] ??= [];
    marks[name].push((performance.now() - t0) * 1000);
  };
  for (const name of ['enqueue', 'dequeue'] as const) {
    const original = q[name].bind(q);
    q[name] = async (...a: unknown[]) => {
      mark(`${name} called`);
      const out = await original(...a);
      mark(`${name} done`);
      return out;
    };
  }
  for (let it = 0; it < args.iters; it++) {
    await ctx.world.barrier();
    t0 = performance.now();
    let dict: Record<string, unknown> | null = null;
    if (g.rankInGroup === 0) {
      dict = { step: it };
      for (let i = 0; i < args.tensors; i++)
        dict[`t${i}`] = Tensor.full([1024], i, { dtype: 'float32', device: ctx.device });
      mark('built');
    }
    const got = await g.broadcastTensorDict(dict, 0);
    mark('returned');
    await ctx.synchronize();
    mark('synced');
    if (got) for (const v of Object.values(got)) if (v instanceof Tensor) v.dispose();
  }
  delete (q as Partial<typeof q>).enqueue;
  delete (q as Partial<typeof q>).dequeue;
  return Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, +median(v).toFixed(1)]));
}

/**
 * broadcastTensorDict's host work on each side, piece by piece, `iters` back to back
 * without barriers (GPUGROUP_BENCH_PROFILE=1), median µs: the metadata's v8 round trip,
 * and the tensors' wire (a receiver allocating its tensors) with its broadcasts issued.
 * Every rank runs the same collectives; group rank 0 is the source.
 */
export async function hostParts(ctx: RankContext, args: { tensors: number; iters: number }) {
  const g = ctx.world;
  const n = args.tensors;
  const internals = g as unknown as { broadcastWire(wire: unknown, src: number): Promise<void> };
  const meta = [
    ['step', 1],
    ...Array.from({ length: n }, (_, i) => [`t${i}`, { __tensor: ['cuda', 'float32', [1024]] }]),
  ];
  const slots = Array.from({ length: n }, () => ({ dtype: 'float32' as const, shape: [1024], onCpu: false }));
  const bufs = Array.from({ length: n }, (_, i) => Tensor.full([1024], i, { dtype: 'float32', device: ctx.device }));
  const parts: Record<string, number[]> = { metadataV8: [], wire: [] };
  for (let i = 0; i < args.iters; i++) {
    let t0 = performance.now();
    deserialize(serialize(meta));
    parts.metadataV8.push((performance.now() - t0) * 1000);
    t0 = performance.now();
    let received: Tensor[] = [];
    if (g.rankInGroup === 0) {
      await internals.broadcastWire(senderWire(bufs, slots), 0);
    } else {
      const { tensors, wire } = receiverWire(slots, ctx.device);
      await internals.broadcastWire(wire, 0);
      received = tensors;
    }
    parts.wire.push((performance.now() - t0) * 1000);
    for (const t of received) t.dispose();
    if (i % 16 === 15) await ctx.synchronize();
  }
  await ctx.synchronize();
  for (const t of bufs) t.dispose();
  return Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, +median(v).toFixed(2)]));
}
