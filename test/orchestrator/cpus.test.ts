// launchGroup({ cpus }): each rank's thread runs on the CPUs given for it, in both modes,
// and the coordinator's own thread keeps its set (wrong lists: options.test.ts).
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { threadCpus } from '../fixtures/thread-cpus.ts';
import { MODES, launch } from '../helpers.ts';

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
