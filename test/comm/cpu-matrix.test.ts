import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import type { DType } from '../../src/tensor/index.ts';
import type { OpRequest } from '../fixtures/comm-worker.ts';
import { MODES, shmLeftovers } from '../helpers.ts';
import { chunk, concat, input, sum } from './nd.ts';

const worker = new URL('../fixtures/comm-worker.ts', import.meta.url);
const REDUCIBLE: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
const ALL: DType[] = [...REDUCIBLE, 'float8_e4m3fn', 'float8_e5m2'];

type Plain = { shape: number[]; values: number[] };

describe.each(MODES)('CPU communicator, %s mode', (mode) => {
  describe.each([1, 2, 3, 4])('world size %i', (world) => {
    let group: Group;
    beforeAll(async () => {
      group = await launchGroup({ worldSize: world, worker, backend: 'cpu', mode, timeoutMs: 30_000 });
    });
    afterAll(() => group.shutdown());
    const runAll = (req: OpRequest) => group.callAll<Plain | null>('run', req);

    it.each(REDUCIBLE)('all-reduce %s', async (dtype) => {
      const out = await runAll({ op: 'allReduce', shape: [2, 3, 4], dtype });
      for (const r of out) expect(r).toEqual(sum(world, [2, 3, 4], dtype));
    });

    it('all-reduce max/min/prod/avg', async () => {
      const inputs = Array.from({ length: world }, (_, r) => input(r, [6]).values);
      const expect1 = (fn: (xs: number[]) => number) => inputs[0].map((_, i) => fn(inputs.map((x) => x[i])));
      const cases: [OpRequest['reduce'], number[]][] = [
        ['max', expect1((xs) => Math.max(...xs))],
        ['min', expect1((xs) => Math.min(...xs))],
        ['prod', expect1((xs) => xs.reduce((a, b) => a * b, 1))],
        ['avg', expect1((xs) => xs.reduce((a, b) => a + b, 0) / world)],
      ];
      if (world === 1) return; // the world-1 group has no communicator to pass an op to
      for (const [reduce, values] of cases) {
        const out = await runAll({ op: 'allReduce', shape: [6], dtype: 'float64', reduce });
        for (const r of out) expect(r!.values).toEqual(values);
      }
    });

    it.each([0, 1, -1])('all-gather of a (2,3,4) tensor along dim %i', async (dim) => {
      for (const dtype of ['float32', 'bfloat16', 'float8_e4m3fn'] as DType[]) {
        const out = await runAll({ op: 'allGather', shape: [2, 3, 4], dtype, dim });
        const expected = concat(
          Array.from({ length: world }, (_, r) => input(r, [2, 3, 4])),
          dim,
        );
        const decoded =
          dtype === 'float8_e4m3fn'
            ? { ...expected, values: expected.values.map((v) => roundMantissa(v, 3)) }
            : expected;
        for (const r of out) expect(r).toEqual(decoded);
      }
    });

    it.each([0, 1])('reduce-scatter of a 3-D tensor along dim %i (chunk along that dim)', async (dim) => {
      const shape = [2 * world, world, 3];
      const out = await runAll({ op: 'reduceScatter', shape, dtype: 'float32', dim });
      const total = sum(world, shape, 'float32');
      const sizes = new Array(world).fill(shape[dim] / world);
      for (const [rank, r] of out.entries()) expect(r).toEqual(chunk(total, dim, rank, sizes));
    });

    it('uneven all-gatherv and reduce-scatterv with sizes [81, 20, …]', async () => {
      if (world === 1) return;
      const sizes = [81, 20, 5, 1].slice(0, world);
      const gathered = await runAll({ op: 'allGatherv', shape: [0, 3], dtype: 'float32', sizes, dim: 0 });
      const parts = sizes.map((s, r) => input(r, [s, 3]));
      for (const r of gathered) expect(r).toEqual(concat(parts, 0));
      const total = sizes.reduce((a, b) => a + b, 0);
      const scattered = await runAll({ op: 'reduceScatterv', shape: [total, 3], dtype: 'int32', sizes, dim: 0 });
      const summed = sum(world, [total, 3], 'int32');
      for (const [rank, r] of scattered.entries()) expect(r).toEqual(chunk(summed, 0, rank, sizes));
    });

    it('gather to the last rank along dim 1, broadcast from the last rank', async () => {
      const dst = world - 1;
      const gathered = await runAll({ op: 'gather', shape: [2, 3], dtype: 'float64', dim: 1, peer: dst });
      gathered.forEach((r, rank) => {
        if (rank === dst)
          expect(r).toEqual(
            world === 1
              ? input(0, [2, 3])
              : concat(
                  Array.from({ length: world }, (_, q) => input(q, [2, 3])),
                  1,
                ),
          );
        else expect(r).toBeNull();
      });
      const b = await runAll({ op: 'broadcast', shape: [5], dtype: 'int64', peer: dst });
      for (const r of b) expect(r).toEqual(input(dst, [5]));
    });

    it.each(ALL)('send/recv of %s: independent pairs at once, then a ring with default peers', async (dtype) => {
      if (world === 1) return;
      const out = await group.callAll<{ pair: Plain | null; ring: Plain }>('p2p', dtype);
      const bits = dtype === 'float8_e4m3fn' ? 3 : dtype === 'float8_e5m2' ? 2 : 0;
      const conv = (p: Plain) => (bits ? { ...p, values: p.values.map((v) => roundMantissa(v, bits)) } : p);
      out.forEach((r, rank) => {
        if (rank % 2 === 1 && rank < 2 * Math.floor(world / 2)) expect(r.pair).toEqual(conv(input(rank - 1, [3, 5])));
        else expect(r.pair).toBeNull();
        expect(r.ring).toEqual(conv(input((rank - 1 + world) % world, [3, 5])));
      });
    });
  });
});

// fp8 keeps 3 (e4m3fn) or 2 (e5m2) mantissa bits: the fixture's larger integers round (RNE).
function roundMantissa(v: number, bits: number): number {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(v)));
  const q = 2 ** (e - bits);
  const n = v / q;
  const f = Math.floor(n);
  const r = n - f > 0.5 || (n - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return r * q;
}

describe.each(MODES)('CPU communicator edge cases, %s mode', (mode) => {
  it('independent communicators over overlapping rank sets do not interfere', async () => {
    const group = await launchGroup({
      worldSize: 4,
      worker,
      backend: 'cpu',
      mode,
      tensorParallelSize: 2,
      timeoutMs: 30_000,
    });
    try {
      const out = await group.callAll<{ world: Plain; tp: Plain; again: Plain }>('overlapping');
      out.forEach((r, rank) => {
        expect(r.world).toEqual(sum(4, [8], 'float32'));
        expect(r.again).toEqual(sum(4, [8], 'float32'));
        const pair = rank < 2 ? [0, 1] : [2, 3];
        expect(r.tp.values).toEqual(input(pair[0], [8]).values.map((v, i) => v + input(pair[1], [8]).values[i]));
      });
    } finally {
      await group.shutdown();
    }
  });

  it('bad arguments are rejected before any transfer, and the group stays in step', async () => {
    const group = await launchGroup({ worldSize: 3, worker, backend: 'cpu', mode, timeoutMs: 30_000 });
    try {
      const out = await group.callAll<{ errors: string[]; ok: Plain }>('invalid');
      for (const r of out) {
        expect(r.errors).toEqual([
          expect.stringMatching(/^InvalidArgumentError: dim: Invalid dim \(2\) for input tensor with shape \[3, 5\]/),
          expect.stringMatching(/^InvalidArgumentError: input: size 5 of dim 1 is not divisible by world size 3/),
          expect.stringMatching(/^InvalidArgumentError: sizes: expected 3 sizes \(one per rank\), got 4/),
          expect.stringMatching(/^InvalidArgumentError: sizes: sum\(sizes\) = 4 but input has 3 slices along dim 0/),
          expect.stringMatching(/^InvalidArgumentError: dtype: float8_e4m3fn cannot be reduced/),
          expect.stringMatching(/^InvalidArgumentError: src: Invalid src rank \(7\)/),
        ]);
        expect(r.ok).toEqual(sum(3, [3, 5], 'float32'));
      }
    } finally {
      await group.shutdown();
    }
  });

  it('a rank that never joins makes the others fail with CollectiveTimeoutError carrying the flight recorder', async () => {
    const group = await launchGroup({ worldSize: 3, worker, backend: 'cpu', mode, timeoutMs: 1_000 });
    try {
      const t0 = performance.now();
      const out = await Promise.all(
        [0, 1, 2].map((r) => group.callWithOptions<string>(r, 'skipOne', [1], { timeoutMs: 10_000 })),
      );
      const took = performance.now() - t0;
      expect(out[1]).toBe('skipped');
      for (const r of [0, 2]) {
        expect(out[r]).toMatch(
          /^CollectiveTimeoutError: all_reduce #\d+ in group 'world:0\/0' did not complete within 1000 ms/,
        );
        expect(out[r]).toMatch(/Last ops:\n\s+#\d+ all_reduce float32×4 pending/);
      }
      expect(took).toBeGreaterThanOrEqual(950);
      expect(took).toBeLessThan(4_000);
    } finally {
      await group.shutdown();
    }
  });

  it('leaves no shared memory behind', () => {
    expect(shmLeftovers()).toEqual([]);
  });
});
