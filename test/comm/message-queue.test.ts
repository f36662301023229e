// MessageQueue with every rank in this one thread (n queues over one store): framing,
// overflow past the chunk, remote readers, a full ring, closing, bad arguments.
import { describe, expect, it } from 'vitest';
import { MessageQueue, type MessageQueueOptions } from '../../src/comm/index.ts';
import { GroupClosedError, InvalidArgumentError, QueueTimeoutError } from '../../src/errors.ts';
import { shmLeftovers } from '../helpers.ts';
import { groupsOf, useStore } from './cpu-helpers.ts';

useStore();

async function makeQueues(
  world: number,
  chunkBytes: number,
  chunks: number,
  writer: number,
  opts: (r: number) => MessageQueueOptions = () => ({}),
): Promise<MessageQueue[]> {
  const gs = groupsOf(world);
  return Promise.all(
    gs.map((g, r) => MessageQueue.createFromGroup(g, chunkBytes, chunks, writer, { timeoutMs: 5_000, ...opts(r) })),
  );
}

const closeAll = (qs: MessageQueue[]) => Promise.all(qs.map((q) => q.close()));

describe.each(['sab', 'shm'] as const)('MessageQueue in one thread, %s ring', (transport) => {
  it('delivers inline and overflowing messages in order to every reader, from any writer rank', async () => {
    const qs = await makeQueues(4, 256, 3, 2, () => ({ transport }));
    expect(qs[2].isWriter).toBe(true);
    expect(qs[2].localReaders).toEqual([0, 1, 3]);
    expect(qs[2].transport).toBe(transport);
    const messages: unknown[] = [
      { a: 1, nested: { s: 'x', list: [1, 2, null] } },
      new Float64Array(1000).map((_, i) => i / 3), // past the 256-byte chunk: out of band
      'short',
      new BigInt64Array([1n, -2n, 3n]),
      null,
      Array.from({ length: 500 }, (_, i) => `item ${i}`),
      42,
    ];
    const readers = [0, 1, 3].map(async (r) => {
      const got: unknown[] = [];
      for (let i = 0; i < messages.length; i++) got.push(await qs[r].dequeue());
      return got;
    });
    for (const m of messages) await qs[2].enqueue(m);
    for (const got of await Promise.all(readers)) expect(got).toEqual(messages);
    await closeAll(qs);
    expect(shmLeftovers().filter((f) => f.startsWith(`gpugroup-${process.pid}-mq`))).toEqual([]);
  });

  it('a full ring rejects enqueue with QueueTimeoutError naming the reader that stalls', async () => {
    const qs = await makeQueues(3, 128, 2, 0, () => ({ transport, ranks: [10, 11, 12] }));
    const reader1 = (async () => {
      for (let i = 0; i < 5; i++) await qs[1].dequeue();
    })();
    await qs[0].enqueue(1);
    await qs[0].enqueue(2);
    const t0 = performance.now();
    const err = await qs[0].enqueue(3, 300).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(QueueTimeoutError);
    expect((err as QueueTimeoutError).waitingFor).toEqual([2]);
    expect((err as Error).message).toMatch(/group rank 2 \(rank 12\)/);
    await closeAll(qs);
    await expect(reader1).rejects.toBeInstanceOf(GroupClosedError);
  });
});

describe('MessageQueue', () => {
  it('reaches readers on another node over the socket only', async () => {
    const qs = await makeQueues(3, 512, 4, 0, (r) => ({ nodeKey: r === 2 ? 'other-node' : 'this-node' }));
    expect(qs[0].localReaders).toEqual([1]);
    expect(qs[0].remoteReaders).toEqual([2]);
    const big = new Int32Array(10_000).map((_, i) => i * 7);
    const read = Promise.all(
      [1, 2].map(async (r) => [await qs[r].dequeue(), await qs[r].dequeue(), await qs[r].broadcastObject()]),
    );
    await qs[0].enqueue({ hello: 'world' });
    await qs[0].enqueue(big);
    expect(await qs[0].broadcastObject('last')).toBe('last');
    for (const got of await read) expect(got).toEqual([{ hello: 'world' }, big, 'last']);
    await closeAll(qs);
  });

  it('times out a dequeue with no message, naming the writer', async () => {
    const qs = await makeQueues(2, 128, 2, 1);
    const err = await qs[0].dequeue(100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueTimeoutError);
    expect((err as QueueTimeoutError).waitingFor).toEqual([1]);
    await closeAll(qs);
  });

  it('a reader can drain what was written before the writer closed; then it gets GroupClosedError', async () => {
    const qs = await makeQueues(2, 128, 4, 0);
    await qs[0].enqueue('a');
    await qs[0].enqueue('b'.repeat(1000));
    await qs[0].close();
    expect(await qs[1].dequeue()).toBe('a');
    expect(await qs[1].dequeue()).toBe('b'.repeat(1000));
    await expect(qs[1].dequeue(1_000)).rejects.toBeInstanceOf(GroupClosedError);
    await qs[1].close();
  });

  it('refuses bad arguments and the wrong side before touching anything', async () => {
    const [g] = groupsOf(1);
    await expect(MessageQueue.createFromGroup(g, 4, 2)).rejects.toMatchObject({ argument: 'chunkBytes' });
    await expect(MessageQueue.createFromGroup(g, 1024, 0)).rejects.toMatchObject({ argument: 'chunks' });
    await expect(MessageQueue.createFromGroup(g, 1024, 2, 1)).rejects.toMatchObject({ argument: 'writerRank' });
    const qs = await makeQueues(2, 128, 2, 0);
    await expect(qs[0].dequeue()).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(qs[1].enqueue(1)).rejects.toThrow(/only the writer \(group rank 0\)/);
    await closeAll(qs);
  });

  it('works at world size 1 (no readers)', async () => {
    const [q] = await makeQueues(1, 128, 2, 0);
    await q.enqueue({ alone: true });
    await q.close();
  });
});
