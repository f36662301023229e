// The CPU communicator with every rank in this one thread (n instances over one store),
// through both transports: results against values computed here with plain arithmetic.
import { describe, expect, it } from 'vitest';
import type { CpuCommunicator } from '../../src/comm/index.ts';
import { Tensor, type DType } from '../../src/tensor/index.ts';
import { readdirSync } from 'node:fs';
import { destroyAll, input, makeComms, useStore, values } from './cpu-helpers.ts';
import { chunk, concat } from './nd.ts';

useStore();

/** Segment files this process created that are still in /dev/shm. */
const ours = () => readdirSync('/dev/shm').filter((f) => f.startsWith(`gpugroup-${process.pid}-`));

const REDUCIBLE: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
const TRANSPORTS = ['sab', 'shm'] as const;

/** Element-wise sum over ranks of the default inputs, wrapped like the dtype. */
function summed(world: number, n: number, dtype: DType): number[] {
  const raw = Array.from({ length: n }, (_, i) =>
    Array.from({ length: world }, (_, r) => (i % 50) + 10 * r).reduce((a, b) => a + b, 0),
  );
  if (dtype === 'int8') return Array.from(Int8Array.from(raw));
  if (dtype === 'uint8') return Array.from(Uint8Array.from(raw));
  return raw;
}

const plainOf = (rank: number, shape: number[]) => ({
  shape,
  values: Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 50) + 10 * rank),
});

async function plain(t: Tensor | null) {
  return t === null ? null : { shape: [...t.shape], values: (await values(t))! };
}

describe.each(TRANSPORTS)('CPU communicator in one thread, %s transport', (transport) => {
  describe.each([1, 2, 3, 4])('world size %i', (world) => {
    const ranks = Array.from({ length: world }, (_, r) => r);
    const all = <T>(comms: CpuCommunicator[], fn: (c: CpuCommunicator, r: number) => Promise<T>) =>
      Promise.all(comms.map(fn));

    it('picks the transport and every op and dtype of all-reduce gives the host result on every rank', async () => {
      const comms = await makeComms(world, { transport });
      expect(comms.every((c) => c.transport === transport)).toBe(true);
      for (const dtype of REDUCIBLE) {
        const out = await all(comms, (c, r) => c.allReduce(input(r, [2, 3, 4], dtype)));
        for (const t of out) {
          expect(t.shape).toEqual([2, 3, 4]);
          expect(t.dtype).toBe(dtype);
          expect(await values(t)).toEqual(summed(world, 24, dtype));
        }
      }
      const xs = ranks.map((r) => Array.from({ length: 6 }, (_, i) => (i - 2) * (r + 1) + r));
      const expected: Record<string, (v: number[]) => number> = {
        max: (v) => Math.max(...v),
        min: (v) => Math.min(...v),
        prod: (v) => v.reduce((a, b) => a * b, 1),
        avg: (v) => v.reduce((a, b) => a + b, 0) / world,
      };
      for (const op of ['max', 'min', 'prod', 'avg'] as const) {
        const out = await all(comms, (c, r) => c.allReduce(Tensor.fromArray(xs[r], { dtype: 'float64' }), op));
        const want = xs[0].map((_, i) => expected[op](xs.map((x) => x[i])));
        for (const t of out) expect(await values(t)).toEqual(want);
      }
      await destroyAll(comms);
    });

    it.runIf(world > 1)(
      'integer avg divides the wrapped sum and truncates toward zero; products wrap like C',
      async () => {
        const comms = await makeComms(world, { transport });
        // int32: -7 on rank 0 and 0 elsewhere: -7 / world truncated toward zero.
        let out = await all(comms, (c, r) =>
          c.allReduce(Tensor.fromArray([r === 0 ? -7 : 0, 2 * world + 1], { dtype: 'int32' }), 'avg'),
        );
        for (const t of out) expect(await values(t)).toEqual([Math.trunc(-7 / world), 2 * world + 1]);
        // int8: 100 per rank wraps before the division, as NCCL's SumPostDiv does.
        out = await all(comms, (c) => c.allReduce(Tensor.fromArray([100], { dtype: 'int8' }), 'avg'));
        const wrapped = Int8Array.from([100 * world])[0];
        for (const t of out) expect(await values(t)).toEqual([Math.trunc(wrapped / world)]);
        // int32 products beyond 2^53 keep the exact low 32 bits; int64 sums wrap at 2^64.
        out = await all(comms, (c, r) =>
          c.allReduce(Tensor.fromArray([r < 2 ? 65537 : 1], { dtype: 'int32' }), 'prod'),
        );
        for (const t of out) expect(await values(t)).toEqual([131073]);
        out = await all(comms, (c) =>
          c.allReduce(Tensor.fromArray([2n ** 62n, -(2n ** 62n)], { dtype: 'int64' }), 'sum'),
        );
        for (const t of out)
          expect(Array.from((await t.toArray()) as BigInt64Array)).toEqual([
            BigInt.asIntN(64, BigInt(world) * 2n ** 62n),
            BigInt.asIntN(64, -BigInt(world) * 2n ** 62n),
          ]);
        await destroyAll(comms);
      },
    );

    it.runIf(world === 4)('float16/bfloat16 accumulate in float32 and round once, to nearest even', async () => {
      const comms = await makeComms(world, { transport });
      // Rounding after every step would stay at 256 (bf16) / 2048 (f16); once: 259 → 260, 2051 → 2052.
      const bf = await all(comms, (c, r) => c.allReduce(Tensor.fromArray([r === 0 ? 256 : 1], { dtype: 'bfloat16' })));
      for (const t of bf) expect(await values(t)).toEqual([260]);
      const half = await all(comms, (c, r) =>
        c.allReduce(Tensor.fromArray([r === 0 ? 2048 : 1], { dtype: 'float16' })),
      );
      for (const t of half) expect(await values(t)).toEqual([2052]);
      await destroyAll(comms);
    });

    it('all-gather along dims 0, 1, -1 of a (2,3,4) tensor; reduce-scatter along dims 0 and 1 of a 3-D tensor', async () => {
      const comms = await makeComms(world, { transport });
      for (const dim of [0, 1, -1]) {
        for (const dtype of ['float32', 'bfloat16', 'int64', 'float8_e5m2'] as DType[]) {
          // Values 0..7: exact in every dtype here, fp8 e5m2 included.
          const out = await all(comms, (c, r) =>
            c.allGather(
              input(r, [2, 3, 4], dtype, (i, q) => (i % 5) + q),
              dim,
            ),
          );
          const parts = ranks.map((q) => ({
            shape: [2, 3, 4],
            values: Array.from({ length: 24 }, (_, i) => (i % 5) + q),
          }));
          for (const t of out) expect(await plain(t)).toEqual(concat(parts, dim));
        }
      }
      for (const dim of [0, 1]) {
        const shape = [2 * world, world, 3];
        const n = shape.reduce((a, b) => a * b, 1);
        const out = await all(comms, (c, r) => c.reduceScatter(input(r, shape, 'float32'), dim));
        const total = { shape, values: summed(world, n, 'float32') };
        for (let r = 0; r < world; r++)
          expect(await plain(out[r])).toEqual(chunk(total, dim, r, new Array(world).fill(shape[dim] / world)));
      }
      await destroyAll(comms);
    });

    it.runIf(world > 1)('uneven all-gatherv and reduce-scatterv with sizes [81, 20, …]', async () => {
      const comms = await makeComms(world, { transport });
      const sizes = [81, 20, 5, 0].slice(0, world);
      const gathered = await all(comms, (c, r) => c.allGatherv(input(r, [sizes[r], 3], 'float32'), sizes, 0));
      for (const t of gathered)
        expect(await plain(t)).toEqual(
          concat(
            sizes.map((s, r) => plainOf(r, [s, 3])),
            0,
          ),
        );
      // Along dim 1 too (vLLM only does dim 0).
      const along1 = await all(comms, (c, r) => c.allGatherv(input(r, [2, sizes[r]], 'int32'), sizes, 1));
      for (const t of along1)
        expect(await plain(t)).toEqual(
          concat(
            sizes.map((s, r) => plainOf(r, [2, s])),
            1,
          ),
        );
      const total = sizes.reduce((a, b) => a + b, 0);
      const scattered = await all(comms, (c, r) => c.reduceScatterv(input(r, [total, 3], 'int32'), sizes, 0));
      const sum = { shape: [total, 3], values: summed(world, total * 3, 'int32') };
      for (let r = 0; r < world; r++) expect(await plain(scattered[r])).toEqual(chunk(sum, 0, r, sizes));
      await destroyAll(comms);
    });

    it('gather to the last rank along dim 1 and broadcast from the last rank', async () => {
      const comms = await makeComms(world, { transport });
      const dst = world - 1;
      const gathered = await all(comms, (c, r) => c.gather(input(r, [2, 3], 'float64'), dst, 1));
      for (let r = 0; r < world; r++) {
        if (r === dst)
          expect(await plain(gathered[r])).toEqual(
            world === 1
              ? plainOf(0, [2, 3])
              : concat(
                  ranks.map((q) => plainOf(q, [2, 3])),
                  1,
                ),
          );
        else expect(gathered[r]).toBeNull();
      }
      const b = await all(comms, (c, r) => c.broadcast(input(r, [5], 'int64'), dst));
      for (const t of b) expect(await plain(t)).toEqual(plainOf(dst, [5]));
      await destroyAll(comms);
    });

    it.runIf(world > 1)('send/recv: independent pairs at once, then a ring with default peers', async () => {
      const comms = await makeComms(world, { transport });
      const pairs = await all(comms, async (c, r) => {
        if (r >= 2 * Math.floor(world / 2)) return null;
        if (r % 2 === 0)
          return c
            .send(
              input(r, [3, 5], 'float8_e4m3fn', (i) => i % 8),
              r + 1,
            )
            .then(() => null);
        return c.recv([3, 5], 'float8_e4m3fn', r - 1);
      });
      for (let r = 0; r < world; r++) {
        if (r % 2 === 1 && r < 2 * Math.floor(world / 2))
          expect(await values(pairs[r])).toEqual(Array.from({ length: 15 }, (_, i) => i % 8));
        else expect(pairs[r]).toBeNull();
      }
      const ring = await all(comms, async (c, r) => {
        const sent = c.send(input(r, [3, 5], 'float32'));
        const got = c.recv([3, 5], 'float32');
        await sent;
        return got;
      });
      for (let r = 0; r < world; r++) expect(await plain(ring[r])).toEqual(plainOf((r - 1 + world) % world, [3, 5]));
      await destroyAll(comms);
    });
  });

  describe('chunked transfers (tensors many times the segment size)', () => {
    const small = { transport, bufferBytes: 1024, p2pBytes: 256, smallAllReduceBytes: 512 };

    it.each([2, 3, 4])('world %i: every op moves and reduces tensors across many rounds', async (world) => {
      const comms = await makeComms(world, small);
      const ranks = Array.from({ length: world }, (_, r) => r);
      const n = 3001; // not a multiple of any chunk: last chunks are partial
      const f = (i: number, r: number) => ((i * 7 + r * 13) % 101) - 50;
      for (const dtype of ['float32', 'bfloat16', 'int64', 'int8'] as DType[]) {
        const out = await Promise.all(comms.map((c, r) => c.allReduce(input(r, [n], dtype, f))));
        const want = Array.from({ length: n }, (_, i) => ranks.reduce((a, r) => a + f(i, r), 0));
        const wrapped = dtype === 'int8' ? Array.from(Int8Array.from(want)) : want;
        for (const t of out) expect(await values(t)).toEqual(wrapped);
      }
      const maxed = await Promise.all(comms.map((c, r) => c.allReduce(input(r, [n], 'float32', f), 'max')));
      for (const t of maxed)
        expect(await values(t)).toEqual(Array.from({ length: n }, (_, i) => Math.max(...ranks.map((r) => f(i, r)))));
      const sizes = ranks.map((r) => 700 + 301 * r);
      const gathered = await Promise.all(
        comms.map((c, r) => c.allGatherv(input(r, [sizes[r]], 'float64', f), sizes, 0)),
      );
      const gWant = ranks.flatMap((r) => Array.from({ length: sizes[r] }, (_, i) => f(i, r)));
      for (const t of gathered) expect(await values(t)).toEqual(gWant);
      const total = sizes.reduce((a, b) => a + b, 0);
      const rs = await Promise.all(comms.map((c, r) => c.reduceScatterv(input(r, [total], 'float32', f), sizes, 0)));
      const rsAll = Array.from({ length: total }, (_, i) => ranks.reduce((a, r) => a + f(i, r), 0));
      let at = 0;
      for (let r = 0; r < world; r++) {
        expect(await values(rs[r])).toEqual(rsAll.slice(at, at + sizes[r]));
        at += sizes[r];
      }
      const g = await Promise.all(comms.map((c, r) => c.gather(input(r, [n], 'int32', f), 1, 0)));
      expect(await values(g[1])).toEqual(ranks.flatMap((r) => Array.from({ length: n }, (_, i) => f(i, r))));
      const b = await Promise.all(comms.map((c, r) => c.broadcast(input(r, [n], 'int32', f), world - 1)));
      for (const t of b) expect(await values(t)).toEqual(Array.from({ length: n }, (_, i) => f(i, world - 1)));
      // A ring far larger than the two p2p slots: sends and receives must run side by side.
      const ring = await Promise.all(
        comms.map(async (c, r) => {
          const sent = c.send(input(r, [n], 'float32', f));
          const got = c.recv([n], 'float32');
          await sent;
          return got;
        }),
      );
      for (let r = 0; r < world; r++)
        expect(await values(ring[r])).toEqual(Array.from({ length: n }, (_, i) => f(i, (r - 1 + world) % world)));
      await destroyAll(comms);
    });
  });

  it('independent communicators over overlapping rank sets do not interfere', async () => {
    // Ranks 0..3 in A; ranks 1 and 2 also in B. Their ops interleave on the same ranks.
    const a = await makeComms(4, { transport });
    const b = await makeComms(2, { transport });
    const x = (r: number) => input(r, [8], 'float32');
    const [ra, rb] = await Promise.all([
      Promise.all(a.map((c, r) => c.allReduce(x(r)))),
      Promise.all(b.map((c, q) => c.allReduce(x(q + 1)))),
    ]);
    for (const t of ra) expect(await values(t)).toEqual(summed(4, 8, 'float32'));
    const pair = Array.from({ length: 8 }, (_, i) => (i % 50) + 10 + (i % 50) + 20);
    for (const t of rb) expect(await values(t)).toEqual(pair);
    const again = await Promise.all(a.map((c, r) => c.allReduce(x(r))));
    for (const t of again) expect(await values(t)).toEqual(summed(4, 8, 'float32'));
    await destroyAll([...a, ...b]);
  });

  it('invalid arguments are rejected before any transfer, and the ranks stay in step', async () => {
    const comms = await makeComms(3, { transport });
    const x = input(0, [3, 5], 'float32');
    const c = comms[0];
    const fake = new Tensor(
      { kind: 'device', device: 'cuda:0', ordinal: 0, bytes: 60 } as unknown as ConstructorParameters<typeof Tensor>[0],
      'float32',
      [3, 5],
    );
    await expect(c.allReduce(fake)).rejects.toThrow(
      /^input: this communicator of group '.*' works on cpu, but the tensor is on cuda:0/,
    );
    await expect(c.allGather(x, 2)).rejects.toThrow(/^dim: Invalid dim \(2\) for input tensor with shape \[3, 5\]/);
    await expect(c.reduceScatter(x, 1)).rejects.toThrow(/^input: size 5 of dim 1 is not divisible by world size 3/);
    await expect(c.allGatherv(x, [3, 3, 3, 3])).rejects.toThrow(/^sizes: expected 3 sizes \(one per rank\), got 4/);
    await expect(c.reduceScatterv(x, [1, 1, 2], 0)).rejects.toThrow(
      /^sizes: sum\(sizes\) = 4 but input has 3 slices along dim 0/,
    );
    await expect(c.allReduce(input(0, [4], 'float8_e4m3fn'))).rejects.toThrow(
      /^dtype: float8_e4m3fn cannot be reduced/,
    );
    await expect(c.broadcast(x, 7)).rejects.toThrow(/^src: Invalid src rank \(7\) for group '.*' of size 3/);
    await expect(c.send(x, 0)).rejects.toThrow(/^dst: rank 0 cannot send to or receive from itself/);
    const ok = await Promise.all(comms.map((q, r) => q.allReduce(input(r, [3, 5], 'float32'))));
    for (const t of ok) expect(await values(t)).toEqual(summed(3, 15, 'float32'));
    await destroyAll(comms);
  });

  it('a mismatched collective across ranks is reported, not silently corrupted', async () => {
    const comms = await makeComms(2, { transport, timeoutMs: 3_000 });
    const out = await Promise.allSettled([
      comms[0].allReduce(input(0, [4], 'float32')),
      comms[1].allReduce(input(1, [8], 'float32')),
    ]);
    const reasons = out.map((r) => String((r as PromiseRejectedResult).reason));
    expect(out.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    // Both sides named: the op as the user called it, each rank's dtype and shape.
    expect(reasons[0]).toMatch(
      /^InvalidArgumentError: collective: allReduce on rank 0 of group '.*' does not match rank 1: this rank called allReduce float32 \[4\], rank 1 called allReduce float32 \[8\]/,
    );
    expect(reasons[1]).toMatch(
      /^InvalidArgumentError: collective: allReduce on rank 1 of group '.*' does not match rank 0: this rank called allReduce float32 \[8\], rank 0 called allReduce float32 \[4\]/,
    );
    const p2p = await Promise.allSettled([
      comms[0].send(input(0, [4], 'float32'), 1),
      comms[1].recv([5], 'float32', 0),
    ]);
    // The communicator failed above: later operations reject with that failure.
    for (const r of p2p) expect(r.status).toBe('rejected');
    await destroyAll(comms);
  });

  it('mismatches name both sides: allGather shapes, a broadcast against an all-reduce, a recv of the wrong size', async () => {
    let comms = await makeComms(2, { transport, timeoutMs: 3_000 });
    const gathered = await Promise.allSettled(comms.map((c, r) => c.allGather(input(r, [2, r + 2], 'float32'), 0)));
    expect(String((gathered[0] as PromiseRejectedResult).reason)).toContain('allGather on rank 0 of group');
    expect(String((gathered[0] as PromiseRejectedResult).reason)).toContain(
      'this rank called allGather float32 [2, 2], rank 1 called allGather float32 [2, 3]',
    );
    await destroyAll(comms);
    comms = await makeComms(2, { transport, timeoutMs: 3_000 });
    const mixed = await Promise.allSettled([
      comms[0].broadcast(input(0, [4], 'int32'), 0),
      comms[1].allReduce(input(1, [4], 'bfloat16'), 'max'),
    ]);
    expect(String((mixed[1] as PromiseRejectedResult).reason)).toContain(
      'this rank called allReduce bfloat16 [4] (max), rank 0 called broadcast int32 [4] from 0',
    );
    await destroyAll(comms);
    comms = await makeComms(2, { transport, timeoutMs: 3_000 });
    const p2p = await Promise.allSettled([
      comms[0].send(input(0, [4], 'float32'), 1),
      comms[1].recv([5], 'float32', 0),
    ]);
    expect(p2p[0].status).toBe('fulfilled');
    expect(String((p2p[1] as PromiseRejectedResult).reason)).toMatch(
      /^InvalidArgumentError: recv: recv on rank 1 of group '.*' expects recv float32 \[5\] from rank 0, but rank 0 called send float32 \[4\] \(16 bytes, not 20\)/,
    );
    await destroyAll(comms);
  });

  it('a rank that never joins: CollectiveTimeoutError at the deadline, with the flight recorder', async () => {
    const comms = await makeComms(3, { transport, timeoutMs: 600 });
    await Promise.all(comms.map((c, r) => c.allReduce(input(r, [4], 'float32'))));
    const t0 = performance.now();
    const out = await Promise.allSettled([0, 2].map((r) => comms[r].allReduce(input(r, [4], 'float32'))));
    const took = performance.now() - t0;
    for (const r of out) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as Error & { op: string; seq: number; recent: unknown[] };
      expect(err.name).toBe('CollectiveTimeoutError');
      expect(err.op).toBe('all_reduce');
      expect(err.seq).toBe(1);
      expect(err.message).toMatch(/^all_reduce #1 in group '.*' did not complete within 600 ms/);
      expect(err.message).toMatch(
        /Last ops:\n\s+#0 all_reduce float32×4 \d+\.\d ms\n\s+#1 all_reduce float32×4 pending/,
      );
    }
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(2_000);
    // The communicator was aborted: later ops fail at once with the same error.
    await expect(comms[0].broadcast(input(0, [1], 'float32'), 0)).rejects.toThrow(/did not complete within 600 ms/);
    await destroyAll(comms);
  });

  it('an abort signal rejects pending and later ops promptly with its RankFailedError', async () => {
    const { RankFailedError } = await import('../../src/errors.ts');
    const ac = new AbortController();
    const gs = await makeComms(2, { transport, timeoutMs: 10_000, abortSignal: ac.signal });
    const pending = gs[0].allReduce(input(0, [4], 'float32'));
    const recv = gs[0].recv([4], 'float32', 1);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    ac.abort(new RankFailedError(1, 1, null, 'boom'));
    const [a, b] = await Promise.allSettled([pending, recv]);
    expect(a.status === 'rejected' && String(a.reason)).toMatch(
      /^RankFailedError: rank 1 failed \(exit code 1\): boom/,
    );
    expect(b.status === 'rejected' && b.reason).toBeInstanceOf(RankFailedError);
    expect(performance.now() - t0).toBeLessThan(300);
    await expect(gs[1].allReduce(input(1, [4], 'float32'))).rejects.toBeInstanceOf(RankFailedError);
    await destroyAll(gs);
  });

  it('destroy rejects pending ops with GroupClosedError and leaves no /dev/shm files', async () => {
    const comms = await makeComms(2, { transport });
    // Unlinked as soon as every rank mapped them: a crash now would leave nothing behind.
    expect(ours()).toEqual([]);
    const pending = comms[0].broadcast(input(0, [4], 'float32'), 1);
    await destroyAll(comms);
    await expect(pending).rejects.toThrow(/was destroyed/);
    await expect(comms[1].allReduce(input(1, [4], 'float32'))).rejects.toThrow(/GroupClosedError|was destroyed/);
    expect(ours()).toEqual([]);
  });
});
