// Rank side of the MessageQueue bench: round trip through a 2-rank ack queue, and
// throughput from rank 0 to every other rank.
import { MessageQueue } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { StatelessProcessGroup } from '../../src/store/index.ts';
import { percentiles } from '../stats.ts';

const CHUNK_BYTES = 4 << 20;
const CHUNKS = 6;

/**
 * Rank 0 enqueues a small message to every reader; rank 1 answers on a second queue
 * read by rank 0 only. Rank 0 times enqueue → answer.
 */
export async function roundTrip(ctx: RankContext, args: { iters: number; bytes: number }) {
  const q = await MessageQueue.createFromGroup(ctx.processGroup, CHUNK_BYTES, CHUNKS, 0, { timeoutMs: 60_000 });
  const pair =
    ctx.rank < 2
      ? StatelessProcessGroup.fromStore(ctx.store.withPrefix('mq-bench-ack'), ctx.rank, 2, { storeTimeoutMs: 60_000 })
      : null;
  const ack = pair ? await MessageQueue.createFromGroup(pair, CHUNK_BYTES, CHUNKS, 1, { timeoutMs: 60_000 }) : null;
  const payload = new Uint8Array(args.bytes);
  const samples: number[] = [];
  try {
    for (let i = 0; i < args.iters; i++) {
      if (ctx.rank === 0) {
        const t0 = performance.now();
        await q.enqueue(payload);
        await ack!.dequeue();
        samples.push((performance.now() - t0) * 1000);
      } else {
        await q.dequeue();
        if (ctx.rank === 1) await ack!.enqueue(i);
      }
    }
    return ctx.rank === 0 ? percentiles(samples.slice(Math.floor(args.iters / 10))) : null;
  } finally {
    await ctx.processGroup.barrier();
    await ack?.close();
    await q.close();
  }
}

/** Rank 0 sends `count` messages of `bytes`; the time runs until every reader has all of them. */
export async function throughput(ctx: RankContext, args: { count: number; bytes: number }) {
  const q = await MessageQueue.createFromGroup(ctx.processGroup, CHUNK_BYTES, CHUNKS, 0, { timeoutMs: 60_000 });
  const payload = new Uint8Array(args.bytes).fill(7);
  try {
    await ctx.processGroup.barrier();
    const t0 = performance.now();
    for (let i = 0; i < args.count; i++) {
      if (ctx.rank === 0) await q.enqueue(payload);
      else if ((await q.dequeue<Uint8Array>()).length !== args.bytes) throw new Error('short message');
    }
    await ctx.processGroup.barrier();
    const s = (performance.now() - t0) / 1000;
    return { s, MBps: (args.count * args.bytes) / s / 1e6 };
  } finally {
    await q.close();
  }
}
