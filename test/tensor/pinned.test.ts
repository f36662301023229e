// Pinned host tensors where no CUDA runtime or device is visible: a clear error naming
// the option, before anything is allocated (their copies are tested in staging.test.ts
// against the stand-in library and in test/gpu/copies.test.ts on a GPU).
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { Tensor } from '../../src/tensor/index.ts';

describe.skipIf(cudaDeviceCount() > 0)('pinned host tensors without CUDA', () => {
  it('refuse with an InvalidArgumentError naming `pinned`', () => {
    for (const make of [
      () => Tensor.empty([4], { pinned: true }),
      () => Tensor.fromArray([1, 2], { pinned: true }),
      () => Tensor.fromArray([1, 2]).pin(),
    ]) {
      try {
        make();
        expect.unreachable('pinned memory without CUDA must be refused');
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect((err as InvalidArgumentError).argument).toBe('pinned');
        expect((err as Error).message).toMatch(/needs the CUDA runtime and a CUDA device/);
      }
    }
  });

  it('leave ordinary host tensors alone', async () => {
    const t = Tensor.fromArray([1, 2, 3]);
    expect(t.isPinned).toBe(false);
    expect(Array.from((await t.toArray()) as Float32Array)).toEqual([1, 2, 3]);
  });
});
