// MessageQueue across real rank threads and processes (launchGroup, CPU backend): a
// 10,000-message stress with overflow, a stalled reader, a killed reader, idle CPU.
import { describe, expect, it } from 'vitest';
import { TcpStoreClient } from '../../src/store/index.ts';
import { launch, shmLeftovers } from '../helpers.ts';

const worker = new URL('./mq-worker.ts', import.meta.url);

describe.each([
  ['thread', 'sab'],
  ['process', 'shm'],
] as const)('MessageQueue across %s ranks', (mode, transport) => {
  it(`writer rank 2 sends 10,000 random int64 arrays (about half past the 40 KiB chunk) through the ${transport} ring; ` +
    `every reader checks every one`, async () => {
    const group = await launch({ mode, worldSize: 4, worker, timeoutMs: 60_000 });
    const out = await group.callAll<{ checked: number; overflowed: number; transport: string | null }>(
      'stress',
      10_000,
    );
    for (const [r, o] of out.entries()) {
      expect(o.transport).toBe(transport);
      expect(o.checked).toBe(r === 2 ? 0 : 10_000);
      expect(o.overflowed).toBeGreaterThan(4_000);
      expect(o.overflowed).toBeLessThan(6_000);
    }
    await group.shutdown();
    expect(shmLeftovers().filter((f) => f.includes('-mq-'))).toEqual([]);
  }, 60_000);

  it('a full ring gives the writer QueueTimeoutError naming the reader that never reads', async () => {
    const group = await launch({ mode, worldSize: 4, worker });
    const [r0, r1, writer, r3] = await group.callAll<
      { sent: number; error: string; waitingFor: number[] } & { read: number }
    >('stall');
    expect(writer.sent).toBe(4);
    expect(writer.error).toMatch(/^QueueTimeoutError: enqueue on message queue 'test-mq' timed out after 500 ms/);
    expect(writer.error).toMatch(/group rank 3 \(rank 3\)/);
    expect(writer.waitingFor).toEqual([3]);
    expect([r0.read, r1.read, r3.read]).toEqual([4, 4, 0]);
  });

  it('a reader that dies mid-stream fails the writer with RankFailedError naming it', async () => {
    const group = await launch({ mode, worldSize: 4, worker });
    const t0 = performance.now();
    await expect(group.callAll('killReader')).rejects.toMatchObject({ name: 'RankFailedError', rank: 1 });
    const store = await TcpStoreClient.connect({ ...group.storeAddress, timeoutMs: 5_000 });
    try {
      const seen = Buffer.from(await store.get('mq/writer')).toString();
      expect(seen).toMatch(/^RankFailedError: rank 1 failed/);
      expect(performance.now() - t0).toBeLessThan(5_000);
    } finally {
      store.close();
    }
  });

  it(
    "readers get the handshake and a 16 MiB message past the chunk while the writer's thread is blocked (as in a " +
      'blocking NCCL call)',
    async () => {
      const group = await launch({ mode, worldSize: 3, worker });
      const out = await group.callAll<{ ready: number; got?: number; blocks?: [number, number][] }>(
        'writerBlocks',
        1_500,
      );
      const [first, second] = out[2].blocks!;
      for (const r of [0, 1]) {
        expect(out[r].ready).toBeLessThan(first[1] - 500);
        expect(out[r].got!).toBeGreaterThanOrEqual(second[0] - 50);
        expect(out[r].got!).toBeLessThan(second[1] - 500);
      }
    },
  );

  it('four idle readers waiting 2 s use under 5% of a core each', async () => {
    const group = await launch({ mode, worldSize: 5, worker });
    const out = await group.callAll<{ cpuMs: number; wallMs: number }>('idle', 2_000);
    for (const o of out.slice(1)) {
      expect(o.wallMs).toBeGreaterThan(1_900);
      // Threads share one process: its CPU time covers every rank, so the bound is 4 × 5%.
      const bound = mode === 'thread' ? 4 * 0.05 : 0.05;
      expect(o.cpuMs / o.wallMs).toBeLessThan(bound);
    }
  });
});
