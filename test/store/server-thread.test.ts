// A store served from a worker thread keeps serving while the owner's thread is blocked
// (what an NCCL connection setup does to a rank), and closes cleanly.
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { StatelessProcessGroup, TcpStoreClient, listenInThread } from '../../src/store/index.ts';
import { freePort } from './helpers.ts';

const fixture = new URL('./fixtures/set-get.ts', import.meta.url).pathname;

describe('store server in a worker thread', () => {
  it('serves a client in another process while this thread is blocked', async () => {
    const server = await listenInThread();
    try {
      const child = new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', fixture, String(server.port)],
          { timeout: 20_000 },
          (err, stdout) => (err ? reject(err) : resolve(stdout)),
        );
      });
      // Block this thread the way a native call does, long enough for the child to start,
      // connect, set and get: it can only finish inside this window if the store does not
      // need this thread.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 6_000);
      const blockEnd = Date.now();
      const out = JSON.parse(await child) as { doneAt: number; value: number[] };
      expect(out.value).toEqual([7]);
      expect(out.doneAt).toBeLessThan(blockEnd);
    } finally {
      await server.close();
    }
  }, 30_000);

  it('StatelessProcessGroup.create({ storeInThread }) works like the in-thread store, and close ends the server', async () => {
    const port = await freePort();
    const [a, b] = await Promise.all(
      [0, 1].map((rank) =>
        StatelessProcessGroup.create({
          host: '127.0.0.1',
          port,
          rank,
          worldSize: 2,
          storeTimeoutMs: 5_000,
          storeInThread: true,
        }),
      ),
    );
    expect(await Promise.all([a.allGatherObj('a'), b.allGatherObj('b')])).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    await Promise.all([a.barrier(), b.barrier()]);
    await Promise.all([b.close(), a.close()]);
    await expect(TcpStoreClient.connect({ host: '127.0.0.1', port, timeoutMs: 300 })).rejects.toThrow();
  });
});
