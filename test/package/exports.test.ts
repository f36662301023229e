import { describe, expect, it } from 'vitest';
import * as gpugroup from 'gpugroup';

describe("the package's public face", () => {
  it("exports the public API's names", () => {
    for (const name of [
      'launchGroup',
      'Tensor',
      'getPpIndices',
      'StatelessProcessGroup',
      'NcclCommunicator',
      'GroupCoordinator',
      'initDistributedEnvironment',
      'initializeModelParallel',
      'getWorldGroup',
      'getTpGroup',
      'getPpGroup',
      'getDpGroup',
      'getEpGroup',
      'RankFailedError',
      'CollectiveTimeoutError',
      'NcclError',
      'CudaError',
      'InvalidArgumentError',
      'add',
      'matmul',
      'softmax',
      'cast',
      'compileKernel',
      'KernelCompileError',
    ]) {
      expect(typeof (gpugroup as Record<string, unknown>)[name], name).toBe('function');
    }
  });

  it('works from the package name: a tensor and the pipeline split', async () => {
    const t = gpugroup.Tensor.fromArray([
      [1, 2],
      [3, 4],
    ]);
    expect(Array.from((await t.movedim(0, 1).toArray()) as Float32Array)).toEqual([1, 3, 2, 4]);
    expect(gpugroup.getPpIndices(5, 1, 3)).toEqual([2, 4]);
  });
});
