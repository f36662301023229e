// Worker module for the MessageQueue tests across rank threads and processes.
import { MessageQueue } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { prng } from '../prng.ts';

const WRITER = 2;

function queue(
  ctx: RankContext,
  chunkBytes: number,
  chunks: number,
  writer = WRITER,
  timeoutMs = 20_000,
): Promise<MessageQueue> {
  return MessageQueue.createFromGroup(ctx.processGroup, chunkBytes, chunks, writer, {
    timeoutMs,
    abortSignal: ctx.abortSignal,
    name: 'test-mq',
  });
}

/** Message i: an int64 array of length 1–10,000 with random bits. */
function message(i: number): BigInt64Array {
  const rand = prng(i * 7919 + 1);
  const n = 1 + Math.floor(rand() * 10_000);
  const words = new Uint32Array(2 * n);
  for (let k = 0; k < words.length; k++) words[k] = Math.floor(rand() * 4294967296);
  return new BigInt64Array(words.buffer);
}

/** Sometimes yields for a random sub-millisecond time (busy, then a turn of the loop). */
async function jitter(rand: () => number): Promise<void> {
  if (rand() > 0.1) return;
  const until = performance.now() + rand() * 0.8;
  while (performance.now() < until);
  await new Promise((r) => setImmediate(r));
}

/** The writer (group rank 2) sends `count` arrays through 40 KiB chunks; readers check each one. */
export async function stress(
  ctx: RankContext,
  count: number,
): Promise<{ checked: number; overflowed: number; transport: string | null }> {
  const q = await queue(ctx, 40 << 10, 8);
  const rand = prng(1000 + ctx.rank);
  let checked = 0;
  let overflowed = 0;
  try {
    for (let i = 0; i < count; i++) {
      const expected = message(i);
      if (expected.byteLength > 40 << 10) overflowed++;
      if (q.isWriter) {
        await q.enqueue(expected);
      } else {
        const got = await q.dequeue<BigInt64Array>();
        if (
          !(got instanceof BigInt64Array) ||
          Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(expected.buffer)) !== 0
        ) {
          throw new Error(`rank ${ctx.rank}: message ${i} differs (length ${got?.length} vs ${expected.length})`);
        }
        checked++;
      }
      await jitter(rand);
    }
    return { checked, overflowed, transport: q.transport };
  } finally {
    await ctx.processGroup.barrier();
    await q.close();
  }
}

/** Reader 3 never reads: the writer fills the ring and gets a QueueTimeoutError naming it. */
export async function stall(
  ctx: RankContext,
): Promise<{ sent: number; error: string; waitingFor: number[] } | { read: number }> {
  const q = await queue(ctx, 1024, 4);
  try {
    if (q.isWriter) {
      let sent = 0;
      try {
        for (;;) {
          await q.enqueue({ sent }, 500);
          sent++;
        }
      } catch (err) {
        return {
          sent,
          error: `${(err as Error).name}: ${(err as Error).message}`,
          waitingFor: (err as { waitingFor: number[] }).waitingFor,
        };
      }
    }
    let read = 0;
    if (ctx.rank !== 3) for (; read < 4; read++) await q.dequeue();
    return { read };
  } finally {
    await ctx.processGroup.barrier();
    await q.close();
  }
}

/**
 * Reader 1 exits after 100 messages; the writer keeps sending and records the error it
 * gets (and how long after the death) in the store, since the coordinator fails the
 * calls of a group with a dead rank.
 */
export async function killReader(ctx: RankContext): Promise<void> {
  const q = await queue(ctx, 4096, 4);
  if (q.isWriter) {
    const t0 = performance.now();
    try {
      for (let i = 0; performance.now() - t0 < 10_000; i++) {
        await q.enqueue(new Float64Array(64).fill(i), 10_000);
        if (i % 16 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      await ctx.store.set('mq/writer', 'no error in 10 s');
    } catch (err) {
      await ctx.store.set('mq/writer', `${(err as Error).name}: ${(err as Error).message}`);
    }
    return;
  }
  for (let i = 0; ; i++) {
    await q.dequeue(10_000);
    if (ctx.rank === 1 && i === 100) process.exit(9);
  }
}

/** Every reader waits 2 s for one message; returns the CPU time it used meanwhile. */
export async function idle(ctx: RankContext, waitMs: number): Promise<{ cpuMs: number; wallMs: number }> {
  const q = await queue(ctx, 4096, 4, 0);
  try {
    const t0 = performance.now();
    const u0 = process.cpuUsage();
    if (q.isWriter) {
      await new Promise((r) => setTimeout(r, waitMs));
      await q.enqueue('wake up');
    } else {
      const got = await q.dequeue();
      if (got !== 'wake up') throw new Error(`unexpected ${String(got)}`);
    }
    const u = process.cpuUsage(u0);
    return { cpuMs: (u.user + u.system) / 1000, wallMs: performance.now() - t0 };
  } finally {
    await q.close();
  }
}

/** Far past what a loopback socket takes in one write: most of it waits in user space unless the writer waits for it to drain. */
const MESSAGE_BYTES = 16 << 20;

/** Blocks this thread (its event loop too) for `ms`, as a native call waiting for peers does. */
function blockThread(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The writer's thread blocks for `blockMs` right after the handshake and right after an
 * enqueue of 16 MiB, past the chunk and the socket's buffers (the socket path), as it would in a blocking NCCL call that
 * waits for the readers; the readers must get the handshake and the message meanwhile.
 * Times are wall-clock ms (Date.now()), comparable across processes.
 */
export async function writerBlocks(
  ctx: RankContext,
  blockMs: number,
): Promise<{ ready: number; got?: number; blocks?: [number, number][] }> {
  const q = await queue(ctx, 1024, 4);
  const ready = Date.now();
  const blocks: [number, number][] = [];
  const block = () => {
    const t0 = Date.now();
    blockThread(blockMs);
    blocks.push([t0, Date.now()]);
  };
  try {
    if (q.isWriter) {
      block();
      await q.enqueue(new Uint8Array(MESSAGE_BYTES).fill(7));
      block();
      return { ready, blocks };
    }
    const got = await q.dequeue<Uint8Array>();
    if (got.length !== MESSAGE_BYTES || got.some((v) => v !== 7))
      throw new Error(`rank ${ctx.rank}: the message differs`);
    return { ready, got: Date.now() };
  } finally {
    await ctx.processGroup.barrier();
    await q.close();
  }
}
