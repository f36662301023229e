// The coordinator's backend choice, on nodes of 0, 1 and 8 GPUs (counts given, nothing loaded).
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { chooseBackend } from '../../src/orchestrator/backend.ts';

const node = (gpus: number, nccl = true) => ({ gpus, ncclLoads: () => nccl });

describe('chooseBackend', () => {
  it("'auto' with one GPU and a world of 1 is nccl on that GPU", () => {
    expect(chooseBackend('auto', [0], node(1))).toBe('nccl');
  });

  it("'auto' is cpu when a rank's GPU is not visible or libnccl does not load", () => {
    expect(chooseBackend('auto', [0, 1, 2, 3], node(1))).toBe('cpu');
    expect(chooseBackend('auto', [0], node(0))).toBe('cpu');
    expect(chooseBackend('auto', [0], node(1, false))).toBe('cpu');
    expect(chooseBackend('auto', [0, 1, 2, 3], node(8))).toBe('nccl');
  });

  it("'nccl' with one GPU works at a world of 1 and names the missing ordinal beyond", () => {
    expect(chooseBackend('nccl', [0], node(1))).toBe('nccl');
    expect(() => chooseBackend('nccl', [0, 1], node(1))).toThrow(InvalidArgumentError);
    expect(() => chooseBackend('nccl', [0, 1], node(1))).toThrow(
      "devices: backend 'nccl' needs cuda:1, but 1 CUDA device is visible",
    );
    expect(() => chooseBackend('nccl', [0], node(0))).toThrow('needs cuda:0, but 0 CUDA devices are visible');
  });

  it("'cpu' never asks whether libnccl loads", () => {
    expect(
      chooseBackend('cpu', [0], {
        gpus: 8,
        ncclLoads: () => {
          throw new Error('asked');
        },
      }),
    ).toBe('cpu');
  });
});
