// What a user gets back for the ordinary mistakes inside worker functions.
import { describe, expect, it } from 'vitest';
import { CallTimeoutError, CollectiveTimeoutError, InvalidArgumentError, RemoteError } from '../../src/errors.ts';
import { MODES, launch } from '../helpers.ts';

const worker = new URL('../fixtures/mistakes-worker.ts', import.meta.url);

describe.each(MODES)('user mistakes in %s mode', (mode) => {
  it('a rank that throws a non-Error value: the message carries the value as JSON and the rank', async () => {
    const group = await launch({ mode, worldSize: 2, worker });
    const err = await group.callAll('throwValue', { code: 7 }, 1).catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.rank).toBe(1);
    expect(err.message).toBe(
      'Error: rank 1 threw a non-Error value: {"code":7} (throw an Error to keep a stack trace)',
    );
    const str = (await group.call(0, 'throwValue', 'oops', 0).catch((e) => e)) as Error;
    expect(str.message).toMatch(/^Error: rank 0 threw a non-Error value: "oops"/);
    const circular = (await group.call(1, 'throwCircular').catch((e) => e)) as Error;
    expect(circular.message).toMatch(
      /^Error: rank 1 threw a non-Error value: <ref \*1> \{ n: 7n, self: \[Circular \*1\] \}/,
    );
  });

  it('returning a Tensor is an error that says so and suggests toArray()', async () => {
    const group = await launch({ mode, worldSize: 1, worker });
    const err = (await group.call(0, 'returnTensor').catch((e) => e)) as InvalidArgumentError;
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe('result');
    expect(err.message).toBe(
      "result: the result of 'returnTensor' on rank 0 is or holds a Tensor (at result), which cannot cross to the coordinator: its data is in this rank's memory; return `await tensor.toArray()` instead",
    );
    const nested = (await group.call(0, 'returnNestedTensor').catch((e) => e)) as InvalidArgumentError;
    expect(nested.message).toMatch(/holds a Tensor \(at result\.out\[1\]\)/);
    expect(await group.call(0, 'returnValues')).toEqual({ out: new Float32Array([1, 2, 3]) });
  });

  it('a collective only some ranks enter ends in CollectiveTimeoutError before the call deadline', async () => {
    const group = await launch({ mode, worldSize: 2, worker, timeoutMs: 3_000 });
    const t0 = performance.now();
    const out = await Promise.allSettled([group.call(0, 'allReduceOn', [0]), group.call(1, 'allReduceOn', [0])]);
    const took = performance.now() - t0;
    expect(out[1]).toEqual({ status: 'fulfilled', value: 'skipped' });
    expect(out[0].status).toBe('rejected');
    const err = (out[0] as PromiseRejectedResult).reason as CollectiveTimeoutError;
    expect(err).not.toBeInstanceOf(CallTimeoutError);
    expect(err).toBeInstanceOf(CollectiveTimeoutError);
    expect(err.op).toBe('all_reduce');
    expect(err.message).toMatch(/^all_reduce #\d+ in group 'world[^']*' did not complete within \d+ ms/);
    expect(err.message).toMatch(/Last ops:\n.*all_reduce float32×4 pending/s);
    expect(took).toBeLessThan(3_000);
  });

  it('an allGather with different shapes on two ranks names the op and both shapes', async () => {
    const group = await launch({ mode, worldSize: 2, worker, timeoutMs: 10_000 });
    const out = await Promise.allSettled([group.call(0, 'allGatherShapes'), group.call(1, 'allGatherShapes')]);
    const errors = out.map((r) => (r as PromiseRejectedResult).reason as InvalidArgumentError);
    expect(errors[0]).toBeInstanceOf(InvalidArgumentError);
    expect(errors[0].message).toContain('allGather on rank 0 of group');
    expect(errors[0].message).toContain(
      'this rank called allGather float32 [2, 2], rank 1 called allGather float32 [2, 3]',
    );
    expect(errors[1].message).toContain(
      'this rank called allGather float32 [2, 3], rank 0 called allGather float32 [2, 2]',
    );
  });
});
