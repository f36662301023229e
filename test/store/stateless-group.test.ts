import { fork } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, StoreTimeoutError } from '../../src/errors.ts';
import { StatelessProcessGroup, TcpStoreClient, TcpStoreServer } from '../../src/store/index.ts';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** `n` groups (ranks 0..n-1) over one in-process server, each with its own connection. */
async function makeGroups(n: number, storeTimeoutMs = 5_000) {
  const server = await TcpStoreServer.listen();
  const clients = await Promise.all(Array.from({ length: n }, () => TcpStoreClient.connect({ host: '127.0.0.1', port: server.port })));
  cleanup.push(() => server.close(), () => clients.forEach((c) => c.close()));
  return { server, groups: clients.map((c, r) => StatelessProcessGroup.fromStore(c.withPrefix('g'), r, n, { storeTimeoutMs })) };
}

describe('StatelessProcessGroup', () => {
  it('broadcastObj from rank 2: the source keeps its object, the others get a copy', async () => {
    const { groups } = await makeGroups(4);
    const secret = { word: 'secret' };
    const got = await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 2 ? secret : null, 2)));
    expect(got[2]).toBe(secret);
    for (const r of [0, 1, 3]) expect(got[r]).toEqual({ word: 'secret' });
  });

  it('allGatherObj returns every rank in rank order, twice in a row', async () => {
    const { groups } = await makeGroups(4);
    expect(await Promise.all(groups.map((g) => g.allGatherObj(g.rank)))).toEqual(Array(4).fill([0, 1, 2, 3]));
    expect(await Promise.all(groups.map((g) => g.allGatherObj(`r${g.rank}`)))).toEqual(Array(4).fill(['r0', 'r1', 'r2', 'r3']));
  });

  it('several senders to one receiver do not collide (keys name the sender)', async () => {
    const { groups } = await makeGroups(4);
    await Promise.all([1, 2, 3].map((s) => Promise.all([groups[s].sendObj(`from ${s} #0`, 0), groups[s].sendObj(`from ${s} #1`, 0)])));
    for (const s of [3, 1, 2]) {
      expect(await groups[0].recvObj(s)).toBe(`from ${s} #0`);
      expect(await groups[0].recvObj(s)).toBe(`from ${s} #1`);
    }
  });

  it('typed arrays, Maps and BigInts survive', async () => {
    const { groups } = await makeGroups(2);
    const value = { f: new Float32Array([1.5, -2]), m: new Map([['k', 1n << 70n]]), big: -5n };
    await groups[0].sendObj(value, 1);
    expect(await groups[1].recvObj(0)).toEqual(value);
  });

  it('values are deleted once every reader has them', async () => {
    const { server, groups } = await makeGroups(3);
    for (let i = 0; i < 20; i++) await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 0 ? i : null, 0)));
    await new Promise((r) => setTimeout(r, 100));
    expect(server.size).toBe(0);
  });

  it('a barrier passes when all arrive and times out naming the barrier when one never does', async () => {
    const { groups } = await makeGroups(4);
    await Promise.all(groups.map((g) => g.barrier()));
    const t0 = performance.now();
    const results = await Promise.allSettled(groups.slice(0, 3).map((g) => g.barrier(300)));
    const took = performance.now() - t0;
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason;
      expect(err).toBeInstanceOf(StoreTimeoutError);
      expect(err.message).toMatch(/barrier\/1\/done \(\d of 4 ranks arrived\)/);
    }
    expect(took).toBeLessThan(1_500);
  });

  it('two groups on different ports at once (ranks 0-2 in the second)', async () => {
    const portA = await freePort();
    const portB = await freePort();
    const [ga, gb] = await Promise.all([
      Promise.all([0, 1, 2, 3].map((rank) => StatelessProcessGroup.create({ host: '127.0.0.1', port: portA, rank, worldSize: 4, storeTimeoutMs: 5_000 }))),
      Promise.all([0, 1, 2].map((rank) => StatelessProcessGroup.create({ host: '127.0.0.1', port: portB, rank, worldSize: 3, storeTimeoutMs: 5_000 }))),
    ]);
    cleanup.push(async () => {
      for (const g of [...ga, ...gb].reverse()) await g.close();
    });
    const [ra, rb] = await Promise.all([
      Promise.all(ga.map((g) => g.allGatherObj(g.rank * 10))),
      Promise.all(gb.map((g) => g.allGatherObj(`b${g.rank}`))),
    ]);
    expect(ra[3]).toEqual([0, 10, 20, 30]);
    expect(rb[0]).toEqual(['b0', 'b1', 'b2']);
  });

  it('works across separate processes', async () => {
    const port = await freePort();
    const script = new URL('../fixtures/spg-rank.ts', import.meta.url);
    const outputs = await Promise.all([0, 1, 2].map((rank) => new Promise<unknown>((resolve, reject) => {
      const child = fork(script, [String(rank), '3', String(port)], { execArgv: ['--import', 'tsx'], serialization: 'advanced' });
      child.once('message', resolve);
      child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`rank ${rank} exited ${code}`))));
    })));
    expect(outputs).toEqual(Array(3).fill([0, 1, 4]));
  }, 20_000);

  it('rejects bad ranks before touching the store, naming the argument', async () => {
    const { groups } = await makeGroups(2);
    await expect(groups[0].sendObj(1, 0)).rejects.toThrow(InvalidArgumentError);
    await expect(groups[0].sendObj(1, 5)).rejects.toThrow(/dst/);
    await expect(groups[0].recvObj(-1)).rejects.toThrow(/src/);
    expect(() => StatelessProcessGroup.fromStore(groups[0].store, 3, 2)).toThrow(/rank/);
  });
});

async function freePort(): Promise<number> {
  const s = await TcpStoreServer.listen();
  const port = s.port;
  await s.close();
  return port;
}
