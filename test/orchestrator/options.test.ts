// launchGroup's options: a mistyped key names the option meant, a wrong type names the type.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { nearestOption, resolveOptions } from '../../src/orchestrator/options.ts';
import { basicWorker } from '../helpers.ts';

const refusal = (opts: object) => {
  try {
    resolveOptions({ worker: basicWorker, ...opts } as never);
  } catch (err) {
    return err as InvalidArgumentError;
  }
  throw new Error(`resolveOptions accepted ${JSON.stringify(opts)}`);
};

describe('launchGroup options', () => {
  it.each([
    [{ world_size: 4 }, 'world_size', "launchGroup has no option 'world_size'; did you mean 'worldSize'?"],
    [{ tensor_parallel_size: 2 }, 'tensor_parallel_size', "did you mean 'tensorParallelSize'?"],
    [{ worldsize: 2 }, 'worldsize', "did you mean 'worldSize'?"],
    [{ timeout: 5 }, 'timeout', "did you mean 'timeoutMs'?"],
    [{ nproc_per_node: 2 }, 'nproc_per_node', "did you mean 'nprocPerNode'?"],
    [{ pipelineParalelSize: 2 }, 'pipelineParalelSize', "did you mean 'pipelineParallelSize'?"],
  ])('an unknown key %j names itself and the nearest known option', (opts, argument, message) => {
    const err = refusal(opts);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe(argument);
    expect(err.message).toContain(message);
  });

  it('a key like no option lists the options instead of guessing', () => {
    const err = refusal({ gpuCount: 2 });
    expect(err.argument).toBe('gpuCount');
    expect(err.message).not.toContain('did you mean');
    expect(err.message).toMatch(/options: worldSize, worker, mode, backend/);
    expect(nearestOption('zzzzzzzz')).toBeNull();
  });

  it.each([
    [{ worldSize: '4' }, "worldSize: expected an integer, got string '4'"],
    [{ worldSize: 2.5 }, 'worldSize: expected a positive integer, got 2.5'],
    [{ worldSize: 0 }, 'worldSize: expected a positive integer, got 0'],
    [{ tensorParallelSize: [2] }, 'tensorParallelSize: expected an integer, got array [2]'],
    [{ timeoutMs: '100' }, "timeoutMs: expected an integer, got string '100'"],
    [{ nodeRank: true }, 'nodeRank: expected an integer, got boolean true'],
    [{ masterPort: '29500' }, "masterPort: expected an integer, got string '29500'"],
    [{ mode: 3 }, "mode: expected 'process' or 'thread', got number 3"],
    [{ shareDevices: 'yes' }, "shareDevices: expected a boolean, got string 'yes'"],
    [{ devices: '0,1' }, "devices: expected 1 CUDA ordinals (one per local rank), got string '0,1'"],
    [{ env: { A: 1 } }, 'env: expected an object of string values; A is number 1'],
    [{ worker: 42 }, 'worker: expected the URL or path of a worker module, got number 42'],
  ])('a wrong type %j names the option and the type', (opts, message) => {
    const err = refusal(opts);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toBe(message);
  });

  it.each([
    [{ cpus: [0] }, 'array [0]'],
    [{ cpus: [[0], [0]] }, 'array'],
    [{ cpus: [[]] }, 'array'],
    [{ cpus: [[-1]] }, 'array'],
    [{ cpus: [[0.5]] }, 'array'],
    [{ cpus: [[100_000]] }, 'array'],
    [{ cpus: '0' }, "string '0'"],
  ])('cpus %j: one non-empty list of the host CPUs per local rank', (opts, got) => {
    const err = refusal(opts);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe('cpus');
    expect(err.message).toMatch(
      /^cpus: expected 1 non-empty list\(s\) of CPU numbers in \[0, \d+\) \(one per local rank\), got /,
    );
    expect(err.message).toContain(`got ${got}`);
  });

  it('worldSize defaults to 1 (nnodes × nprocPerNode when those are given)', () => {
    expect(resolveOptions({ worker: basicWorker })).toMatchObject({ worldSize: 1, nprocPerNode: 1 });
    expect(resolveOptions({ worker: basicWorker, nprocPerNode: 3 })).toMatchObject({ worldSize: 3, nprocPerNode: 3 });
    expect(resolveOptions({ worker: basicWorker, nnodes: 2, nprocPerNode: 2, masterPort: 29_500 })).toMatchObject({
      worldSize: 4,
      nprocPerNode: 2,
    });
  });

  it('launchGroup rejects a mistyped key before starting anything', async () => {
    const err = await launchGroup({ worker: basicWorker, world_size: 2 } as never).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.message).toMatch(/^world_size: launchGroup has no option 'world_size'; did you mean 'worldSize'\?/);
  });

  it('launchGroup without worldSize runs one rank', async () => {
    const group = await launchGroup({ worker: basicWorker, backend: 'cpu', mode: 'thread', timeoutMs: 20_000 });
    try {
      expect(group.worldSize).toBe(1);
      expect(await group.callAll<{ rank: number }>('whoami')).toMatchObject([{ rank: 0 }]);
    } finally {
      await group.shutdown();
    }
  });
});
