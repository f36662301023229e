import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RankFailedError } from '../../src/errors.ts';
import { launchGroup, type Group } from '../../src/orchestrator/index.ts';
import type { DType } from '../../src/tensor/index.ts';
import type { OpRequest } from '../fixtures/comm-worker.ts';
import { chunk, concat, input, sum } from '../comm/nd.ts';
import { gpuModes, placement, world } from './world.ts';

const worker = new URL('../fixtures/comm-worker.ts', import.meta.url);
const REDUCIBLE: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int8', 'uint8', 'int32', 'int64'];
type Plain = { shape: number[]; values: number[] };

describe.skipIf(world < 2).each(gpuModes)('NCCL communicator on %s ranks', (mode) => {
  let group: Group;
  beforeAll(async () => {
    group = await launchGroup({
      worldSize: world,
      worker,
      backend: 'nccl',
      mode,
      timeoutMs: 60_000,
      ...placement(world),
    });
  }, 120_000);
  afterAll(() => group?.shutdown());
  const runAll = (req: OpRequest) => group.callAll<Plain | null>('run', req);

  it('runs on NCCL', () => {
    expect(group.backend).toBe('nccl');
  });

  it.each(REDUCIBLE)('all-reduce %s', async (dtype) => {
    for (const r of await runAll({ op: 'allReduce', shape: [2, 3, 4], dtype }))
      expect(r).toEqual(sum(world, [2, 3, 4], dtype));
  });

  it.each([0, 1, -1])('all-gather along dim %i', async (dim) => {
    const expected = concat(
      Array.from({ length: world }, (_, r) => input(r, [2, 3, 4])),
      dim,
    );
    for (const r of await runAll({ op: 'allGather', shape: [2, 3, 4], dtype: 'float32', dim }))
      expect(r).toEqual(expected);
  });

  it.each([0, 1])('reduce-scatter of a 3-D tensor along dim %i', async (dim) => {
    const shape = [2 * world, world, 3];
    const total = sum(world, shape, 'float32');
    const out = await runAll({ op: 'reduceScatter', shape, dtype: 'float32', dim });
    for (const [rank, r] of out.entries())
      expect(r).toEqual(chunk(total, dim, rank, new Array(world).fill(shape[dim] / world)));
  });

  it('uneven all-gatherv / reduce-scatterv with sizes [81, 20, …]', async () => {
    const sizes = [81, 20, 5, 1].slice(0, world);
    const gathered = await runAll({ op: 'allGatherv', shape: [0, 3], dtype: 'float32', sizes, dim: 0 });
    for (const r of gathered)
      expect(r).toEqual(
        concat(
          sizes.map((s, q) => input(q, [s, 3])),
          0,
        ),
      );
    const total = sizes.reduce((a, b) => a + b, 0);
    const scattered = await runAll({ op: 'reduceScatterv', shape: [total, 3], dtype: 'int32', sizes, dim: 0 });
    for (const [rank, r] of scattered.entries())
      expect(r).toEqual(chunk(sum(world, [total, 3], 'int32'), 0, rank, sizes));
  });

  it('gather to the last rank and broadcast from it', async () => {
    const dst = world - 1;
    const gathered = await runAll({ op: 'gather', shape: [2, 3], dtype: 'float64', dim: 1, peer: dst });
    for (const [rank, r] of gathered.entries()) {
      if (rank === dst)
        expect(r).toEqual(
          concat(
            Array.from({ length: world }, (_, q) => input(q, [2, 3])),
            1,
          ),
        );
      else expect(r).toBeNull();
    }
    for (const r of await runAll({ op: 'broadcast', shape: [5], dtype: 'int64', peer: dst }))
      expect(r).toEqual(input(dst, [5]));
  });

  it.each(['float32', 'bfloat16', 'int64', 'uint8'] as DType[])(
    'send/recv of %s: pairs, then a grouped ring',
    async (dtype) => {
      const out = await group.callAll<{ pair: Plain | null; ring: Plain }>('p2p', dtype);
      out.forEach((r, rank) => {
        if (rank % 2 === 1) expect(r.pair).toEqual(input(rank - 1, [3, 5]));
        expect(r.ring).toEqual(input((rank - 1 + world) % world, [3, 5]));
      });
    },
  );

  it('rejects bad arguments (wrong device included) before any NCCL call', async () => {
    const out = await group.callAll<{ errors: string[]; ok: Plain }>('invalid');
    for (const r of out) {
      expect(r.errors).toHaveLength(7);
      for (const e of r.errors) expect(e).toMatch(/^InvalidArgumentError: /);
      expect(r.errors[5]).toMatch(
        /^InvalidArgumentError: input: this communicator of group 'world:0\/0' works on cuda:\d, but the tensor is on cpu/,
      );
      expect(r.ok).toEqual(sum(world, [3, 5], 'float32'));
    }
  });
});

describe.skipIf(world < 2)('NCCL failures', () => {
  it('a rank killed mid-all-reduce fails the survivors with RankFailedError within 5 s; a new group works afterwards', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker,
      backend: 'nccl',
      mode: 'process',
      timeoutMs: 60_000,
      ...placement(world),
    });
    const pending = group.callAll('loopAllReduce', 100_000, 64 << 20).catch((e) => e); // ~30 s of work
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = performance.now();
    process.kill(group.pids[1], 'SIGKILL');
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err).toMatchObject({ rank: 1, signal: 'SIGKILL' });
    const s0 = performance.now();
    await group.shutdown();
    expect(performance.now() - s0).toBeLessThan(10_000);
    const again = await launchGroup({
      worldSize: world,
      worker,
      backend: 'nccl',
      mode: 'process',
      timeoutMs: 60_000,
      ...placement(world),
    });
    try {
      for (const r of await again.callAll<Plain>('run', { op: 'allReduce', shape: [4], dtype: 'float32' }))
        expect(r).toEqual(sum(world, [4], 'float32'));
    } finally {
      await again.shutdown();
    }
  }, 120_000);

  it('a rank that never joins makes the others fail with CollectiveTimeoutError at the deadline, with the flight recorder', async () => {
    const group = await launchGroup({
      worldSize: world,
      worker,
      backend: 'nccl',
      mode: 'process',
      timeoutMs: 3_000,
      startupTimeoutMs: 60_000,
      ...placement(world),
    });
    try {
      const t0 = performance.now();
      const out = await Promise.all(
        group.ranks.map((r) => group.callWithOptions<string>(r, 'skipOne', [1], { timeoutMs: 30_000 })),
      );
      const took = performance.now() - t0;
      expect(out[1]).toBe('skipped');
      // Every rank's outcome in the message, should one differ.
      const outcomes = JSON.stringify(out);
      for (const r of group.ranks.filter((q) => q !== 1)) {
        expect(out[r], outcomes).toMatch(/^CollectiveTimeoutError/);
        expect(out[r]).toMatch(
          /^CollectiveTimeoutError: all_reduce #\d+ in group 'world:0\/0' did not complete within 3000 ms; the communicator was aborted/,
        );
        expect(out[r]).toMatch(/#\d+ all_reduce float32×4 pending/);
      }
      expect(took).toBeGreaterThanOrEqual(2_900);
      expect(took).toBeLessThan(10_000);
    } finally {
      await group.shutdown();
    }
  }, 60_000);
});
