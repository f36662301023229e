// launchGroup({ cpus }): each rank's thread runs on the CPUs given for it, in both modes,
// and the coordinator's own thread keeps its set; wrong lists are refused before anything
// starts.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { resolveOptions } from '../../src/orchestrator/options.ts';
import { threadCpus } from '../fixtures/thread-cpus.ts';
import { MODES, basicWorker, launch } from '../helpers.ts';

const twoCpus = availableParallelism() >= 2;

describe.each(MODES)('cpus in %s mode', (mode) => {
  it("pins each rank's thread to its own list; the coordinator's thread keeps its set", async () => {
    const mine = threadCpus();
    const sets = twoCpus ? [[1], [0]] : [[0], [0]];
    const group = await launch({ mode, worldSize: 2, cpus: sets });
    expect(await group.callAll('cpusAllowed')).toEqual(sets.map((s) => s.join(',')));
    expect(threadCpus()).toBe(mine);
  });
});

describe('cpus refused before anything starts', () => {
  it.each([
    [{ cpus: [0] }, 'array [0]'],
    [{ cpus: [[0], [0]] }, 'array'],
    [{ cpus: [[]] }, 'array'],
    [{ cpus: [[-1]] }, 'array'],
    [{ cpus: [[0.5]] }, 'array'],
    [{ cpus: [[100_000]] }, 'array'],
    [{ cpus: '0' }, "string '0'"],
  ])('%j', (opts, got) => {
    let err: unknown;
    try {
      resolveOptions({ worker: basicWorker, ...opts } as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).argument).toBe('cpus');
    expect((err as Error).message).toMatch(
      /^cpus: expected 1 non-empty list\(s\) of CPU numbers in \[0, \d+\) \(one per local rank\), got /,
    );
    expect((err as Error).message).toContain(`got ${got}`);
  });
});
