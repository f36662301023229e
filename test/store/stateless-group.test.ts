import { fork } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { GroupClosedError, InvalidArgumentError, StoreTimeoutError } from '../../src/errors.ts';
import { StatelessProcessGroup } from '../../src/store/index.ts';
import { connectClients, freePort, onCleanup, startServer, until } from './helpers.ts';

/** `n` ranks over one in-process server, each with its own connection, under prefix `g`. */
async function makeGroups(n: number, opts: { storeTimeoutMs?: number; dataExpirationSeconds?: number } = {}) {
  const server = await startServer();
  const clients = await connectClients(server, n);
  const groups = clients.map((c, r) =>
    StatelessProcessGroup.fromStore(c.withPrefix('g'), r, n, { storeTimeoutMs: 5_000, ...opts }),
  );
  return { server, clients, groups };
}

/** `worldSize` ranks made by create() on `port`, closed (rank 0 last) after the test. */
async function createGroups(port: number, worldSize: number): Promise<StatelessProcessGroup[]> {
  const groups = await Promise.all(
    Array.from({ length: worldSize }, (_, rank) =>
      StatelessProcessGroup.create({ host: '127.0.0.1', port, rank, worldSize, storeTimeoutMs: 5_000 }),
    ),
  );
  onCleanup(async () => {
    for (const g of [...groups].reverse()) await g.close();
  });
  return groups;
}

describe('StatelessProcessGroup: object exchange', () => {
  it('broadcastObj from rank 2: the source gets its original object back, the others get "secret"', async () => {
    const { groups } = await makeGroups(4);
    const secret = { word: 'secret' };
    const got = await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 2 ? secret : null, 2)));
    expect(got[2]).toBe(secret);
    for (const r of [0, 1, 3]) expect(got[r]).toEqual({ word: 'secret' });
    const plain = await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 2 ? 'secret' : null, 2)));
    expect(plain).toEqual(['secret', 'secret', 'secret', 'secret']);
  });

  it('allGatherObj returns every rank in rank order, call after call', async () => {
    const { groups } = await makeGroups(4);
    expect(await Promise.all(groups.map((g) => g.allGatherObj(g.rank)))).toEqual(Array(4).fill([0, 1, 2, 3]));
    const own = groups.map((g) => ({ rank: g.rank }));
    const second = await Promise.all(groups.map((g) => g.allGatherObj(own[g.rank])));
    for (const [r, list] of second.entries()) {
      expect(list).toEqual([{ rank: 0 }, { rank: 1 }, { rank: 2 }, { rank: 3 }]);
      expect(list[r]).toBe(own[r]);
    }
  });

  it('several senders to one receiver do not collide (keys name the sender)', async () => {
    const { groups } = await makeGroups(4);
    // Every sender writes counters 0 and 1 to rank 0: vLLM's send_to/0/{n} would clash.
    await Promise.all(
      [1, 2, 3].map((s) => Promise.all([groups[s].sendObj(`from ${s} #0`, 0), groups[s].sendObj(`from ${s} #1`, 0)])),
    );
    for (const s of [3, 1, 2]) {
      expect(await groups[0].recvObj(s)).toBe(`from ${s} #0`);
      expect(await groups[0].recvObj(s)).toBe(`from ${s} #1`);
    }
    // Receives posted before the sends also match up.
    const posted = [1, 2, 3].map((s) => groups[0].recvObj(s));
    await Promise.all([3, 2, 1].map((s) => groups[s].sendObj(s * 100, 0)));
    expect(await Promise.all(posted)).toEqual([100, 200, 300]);
  });

  it('typed arrays, Maps, Sets and BigInts survive the trip', async () => {
    const { groups } = await makeGroups(2);
    const value = {
      f: new Float32Array([1.5, -2]),
      i: new BigInt64Array([-(1n << 62n)]),
      u: new Uint8Array([0, 255]),
      m: new Map<string, unknown>([
        ['k', 1n << 70n],
        ['n', null],
      ]),
      s: new Set(['a', 'b']),
      big: -5n,
      d: new Date(0),
    };
    await groups[0].sendObj(value, 1);
    const got = (await groups[1].recvObj(0)) as typeof value;
    expect(got).toEqual(value);
    expect(got.f).toBeInstanceOf(Float32Array);
    expect(got.m.get('k')).toBe(1n << 70n);
    const b = await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 1 ? value : null, 1)));
    expect(b[0]).toEqual(value);
  });

  it('leaves no keys behind: values are deleted by their last reader, barrier keys by the last rank out', async () => {
    const { server, groups } = await makeGroups(3);
    for (let i = 0; i < 20; i++) {
      await Promise.all(groups.map((g) => g.broadcastObj(g.rank === i % 3 ? i : null, i % 3)));
      await Promise.all([groups[1].sendObj(i, 2), groups[2].recvObj(1)]);
      await Promise.all(groups.map((g) => g.allGatherObj(g.rank)));
      await Promise.all(groups.map((g) => g.barrier()));
    }
    await until(() => server.size === 0);
    expect(server.parkedWaits).toBe(0);
  });

  it('writer-side expiry deletes values nobody read', async () => {
    const { server, groups } = await makeGroups(2, { dataExpirationSeconds: 0.02 });
    await groups[0].sendObj('unread', 1);
    expect(server.size).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    await groups[0].sendObj('next', 1); // expiry runs before the write, on the same connection
    expect(await groups[0].store.check(['send_to/1/0/0'])).toBe(false);
    expect(await groups[0].store.check(['send_to/1/0/1'])).toBe(true);
    await new Promise((r) => setTimeout(r, 40));
    expect(await groups[0].expireData()).toBe(1);
    expect(server.size).toBe(0);
  });

  it('two groups at once on different ports (ranks 0-2 in the second)', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const [ga, gb] = await Promise.all([createGroups(portA, 4), createGroups(portB, 3)]);
    const [ra, rb] = await Promise.all([
      Promise.all(ga.map((g) => g.allGatherObj(g.rank * 10))),
      Promise.all(gb.map((g) => g.allGatherObj(`b${g.rank}`))),
    ]);
    expect(ra).toEqual(Array(4).fill([0, 10, 20, 30]));
    expect(rb).toEqual(Array(3).fill(['b0', 'b1', 'b2']));
    await Promise.all([...ga, ...gb].map((g) => g.barrier()));
    const [xa, xb] = await Promise.all([
      Promise.all(ga.map((g) => g.broadcastObj(g.rank === 3 ? 'A' : null, 3))),
      Promise.all(gb.map((g) => g.broadcastObj(g.rank === 0 ? 'B' : null, 0))),
    ]);
    expect(xa).toEqual(['A', 'A', 'A', 'A']);
    expect(xb).toEqual(['B', 'B', 'B']);
  });

  it('works across separate processes', async () => {
    const port = await freePort();
    const script = new URL('./fixtures/spg-rank.ts', import.meta.url);
    const children = [0, 1, 2].map((rank) =>
      fork(script, [String(rank), '3', String(port)], { execArgv: ['--import', 'tsx'], serialization: 'advanced' }),
    );
    onCleanup(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    });
    const exits = children.map((c) => new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code))));
    const reports = await Promise.all(
      children.map(
        (c) =>
          new Promise<Record<string, unknown>>((resolve, reject) => {
            c.once('message', (m) => resolve(m as Record<string, unknown>));
            c.once('exit', (code) => reject(new Error(`child exited ${code} before reporting`)));
          }),
      ),
    );
    expect(await Promise.all(exits)).toEqual([0, 0, 0]);
    const pids = reports.map((r) => r.pid);
    expect(new Set(pids).size).toBe(3);
    for (const r of reports) {
      expect(r.squares).toEqual([0, 1, 4]);
      expect(r.token).toEqual(new Map([['token', 7n]]));
    }
    expect(reports[0].fromOthers).toEqual([
      { from: 1, pid: pids[1], data: new Float64Array([1, 0.5]) },
      { from: 2, pid: pids[2], data: new Float64Array([2, 0.5]) },
    ]);
  }, 30_000);
});

describe('StatelessProcessGroup: barrier', () => {
  it('passes when every rank arrives, again and again', async () => {
    const { groups } = await makeGroups(4);
    for (let i = 0; i < 5; i++) await Promise.all(groups.map((g) => g.barrier()));
    // A rank held back keeps the others waiting until it arrives.
    let released = false;
    const others = Promise.all(groups.slice(1).map((g) => g.barrier().then(() => released)));
    await new Promise((r) => setTimeout(r, 50));
    released = true;
    await groups[0].barrier();
    expect(await others).toEqual([true, true, true]);
  });

  it('a rank that never arrives makes the others fail with StoreTimeoutError within the deadline; a late rank fails at once', async () => {
    const { groups } = await makeGroups(4);
    await Promise.all(groups.map((g) => g.barrier()));
    const t0 = performance.now();
    const results = await Promise.allSettled(groups.slice(0, 3).map((g) => g.barrier(300)));
    const took = performance.now() - t0;
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as StoreTimeoutError;
      expect(err).toBeInstanceOf(StoreTimeoutError);
      expect(err.key).toBe('barrier/1');
      expect(err.timeoutMs).toBe(300);
      expect(err.message).toMatch(/barrier \(3 of 4 ranks arrived\)/);
    }
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1_500);
    // The barrier's outcome is decided: the straggler does not pass alone.
    const t1 = performance.now();
    await expect(groups[3].barrier(5_000)).rejects.toThrow(/barrier \(4 of 4 ranks arrived\)/);
    expect(performance.now() - t1).toBeLessThan(1_000);
  });

  it('rank 0 of a created group leaves last, so closing its store right after a barrier is safe', async () => {
    const groups = await createGroups(await freePort(), 3);
    await Promise.all(groups.map((g) => g.barrier()));
    // Ranks 1 and 2 finish their departures before rank 0's barrier resolves.
    const order: number[] = [];
    await Promise.all(groups.map((g) => g.barrier().then(() => order.push(g.rank))));
    expect(order[2]).toBe(0);
  });
});

describe('StatelessProcessGroup: arguments and lifecycle', () => {
  it('rejects bad arguments with InvalidArgumentError naming them, before touching the store', async () => {
    const { server, clients, groups } = await makeGroups(2);
    const before = await clients[0].numKeys();
    const cases: [Promise<unknown>, string][] = [
      [groups[0].sendObj(1, 0), 'dst'],
      [groups[0].sendObj(1, 2), 'dst'],
      [groups[0].sendObj(1, 1.5), 'dst'],
      [groups[0].recvObj(-1), 'src'],
      [groups[0].recvObj(0), 'src'],
      [groups[0].broadcastObj(1, 2), 'src'],
      [groups[0].sendObj(() => 1, 1), 'obj'],
      [groups[0].barrier(0), 'timeoutMs'],
    ];
    for (const [p, argument] of cases) {
      const err = await p.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect(err).toMatchObject({ argument });
    }
    expect(await clients[0].numKeys()).toBe(before);
    expect(server.parkedWaits).toBe(0);
    const sync: [() => unknown, string][] = [
      [() => StatelessProcessGroup.fromStore(groups[0].store, 2, 2), 'rank'],
      [() => StatelessProcessGroup.fromStore(groups[0].store, 0, 0), 'worldSize'],
      [() => StatelessProcessGroup.fromStore(groups[0].store, 0, 2, { storeTimeoutMs: -5 }), 'storeTimeoutMs'],
    ];
    for (const [fn, argument] of sync) expect(fn).toThrow(expect.objectContaining({ argument }));
    await expect(
      StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 2 }),
    ).rejects.toMatchObject({ argument: 'port' });
    await expect(
      StatelessProcessGroup.create({ host: '127.0.0.1', port: 70_000, rank: 0, worldSize: 2 }),
    ).rejects.toMatchObject({ argument: 'port' });
    await expect(
      StatelessProcessGroup.create({ host: '127.0.0.1', port: 1234, rank: 4, worldSize: 2 }),
    ).rejects.toMatchObject({ argument: 'rank' });
  });

  it('world size 1 on an ephemeral port: every op returns at once; close stops the server', async () => {
    const g = await StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 1 });
    onCleanup(() => g.close());
    const obj = { a: 1 };
    expect(await g.broadcastObj(obj, 0)).toBe(obj);
    expect(await g.allGatherObj('x')).toEqual(['x']);
    await g.barrier();
    await Promise.all([g.close(), g.close()]);
    await expect(g.broadcastObj(1, 0)).rejects.toBeInstanceOf(GroupClosedError);
  });

  it('a receive that times out names its key, and a retry reads the same message', async () => {
    const { groups } = await makeGroups(2, { storeTimeoutMs: 150 });
    const err = await groups[1].recvObj(0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect((err as StoreTimeoutError).key).toBe('g/send_to/1/0/0');
    await groups[0].sendObj('late', 1);
    expect(await groups[1].recvObj(0)).toBe('late');
  });

  it('a fromStore group leaves its store open on close and rejects later calls', async () => {
    const { clients, groups } = await makeGroups(2);
    await groups[0].close();
    await expect(groups[0].sendObj(1, 1)).rejects.toBeInstanceOf(GroupClosedError);
    await clients[0].set('still', 'open');
    expect(await clients[1].check(['still'])).toBe(true);
  });
});

describe('StatelessProcessGroup: direct point-to-point (directPointToPoint)', () => {
  async function directGroups(worldSize: number, storeTimeoutMs = 5_000): Promise<StatelessProcessGroup[]> {
    const port = await freePort();
    const groups = await Promise.all(
      Array.from({ length: worldSize }, (_, rank) =>
        StatelessProcessGroup.create({
          host: '127.0.0.1',
          port,
          rank,
          worldSize,
          storeTimeoutMs,
          directPointToPoint: true,
        }),
      ),
    );
    onCleanup(async () => {
      for (const g of [...groups].reverse()) await g.close();
    });
    return groups;
  }

  it('keeps order per sender with many receives outstanding, and the store holds no messages', async () => {
    const groups = await directGroups(3);
    // Receives issued before anything was sent, several ahead, from two senders at once.
    const from1 = Array.from({ length: 50 }, () => groups[0].recvObj(1));
    const from2 = Array.from({ length: 50 }, () => groups[0].recvObj(2));
    for (let i = 0; i < 50; i++) {
      void groups[1].sendObj({ i, from: 1 }, 0);
      void groups[2].sendObj(new Map([['i', BigInt(i)]]), 0);
    }
    expect(await Promise.all(from1)).toEqual(Array.from({ length: 50 }, (_, i) => ({ i, from: 1 })));
    expect(await Promise.all(from2)).toEqual(Array.from({ length: 50 }, (_, i) => new Map([['i', BigInt(i)]])));
    // Broadcasts and barriers still go through the store, beside the direct messages.
    expect(await Promise.all(groups.map((g) => g.broadcastObj(g.rank === 1 ? 'b' : null, 1)))).toEqual(['b', 'b', 'b']);
    await Promise.all(groups.map((g) => g.barrier()));
  });

  it('a receive that times out says from whom and consumes nothing: a retry gets the message', async () => {
    const groups = await directGroups(2, 200);
    const t0 = performance.now();
    const err = await groups[1].recvObj(0).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect((err as Error).message).toMatch(/from rank 0 to rank 1/);
    await groups[0].sendObj('late', 1);
    expect(await groups[1].recvObj(0)).toBe('late');
    await expect(groups[1].recvObj(0, 50)).rejects.toBeInstanceOf(StoreTimeoutError);
  });

  it('a peer that closes its group fails the receives waiting on it with GroupClosedError, after what it sent', async () => {
    const groups = await directGroups(2);
    await groups[1].sendObj('first', 0);
    expect(await groups[0].recvObj(1)).toBe('first');
    await groups[1].sendObj('last', 0);
    const pending = [groups[0].recvObj(1), groups[0].recvObj(1).catch((e: unknown) => e)];
    await groups[1].close();
    expect(await pending[0]).toBe('last');
    const err = await pending[1];
    expect(err).toBeInstanceOf(GroupClosedError);
    expect((err as Error).message).toMatch(/rank 1 closed its group/);
    await expect(groups[1].sendObj('after', 0)).rejects.toBeInstanceOf(GroupClosedError);
  });
});
