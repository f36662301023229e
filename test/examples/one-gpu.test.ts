// The demo on a machine with one GPU, rehearsed on the stand-in CUDA/NCCL library
// (bench/stub-native: one "GPU", device memory in host memory): it runs on NCCL with a
// world of one rank and shows NCCL through a one-rank communicator, instead of falling
// back to the CPU. The same run on a real GPU is test/gpu/examples.test.ts.
import { describe, expect, it } from 'vitest';
import { useStubNative } from '../stub-native.ts';
import { runNode } from '../cli/command.ts';

const stub = useStubNative();

describe.skipIf(!stub)('quickstart on one GPU (stand-in library)', () => {
  it.each([[[]], [['--backend', 'nccl']]])(
    'quickstart %j runs on NCCL at a world of 1 and exits 0',
    async (args) => {
      const r = await runNode(['--import', 'tsx', 'examples/quickstart.ts', ...args], 60_000, {
        GPUGROUP_STUB_GPUS: '1',
      });
      expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/backend +nccl \(one GPU: a world of 1 rank\)/);
      expect(r.stdout).toMatch(/ranks +1 process, ready/);
      expect(r.stdout).toMatch(/devices +cuda:0 gpugroup stub GPU 0/);
      expect(r.stdout).toMatch(/NCCL +2\.28\.9 /);
      expect(r.stdout).toMatch(/all-reduce +✓ 1 MiB float32, world of 1: every element 1/);
      expect(r.stdout).toMatch(/nccl 1 rank +✓ .*every element intact/);
      expect(r.stdout).toMatch(/cuda graph +✓ captured one-rank NCCL all-gatherv/);
      expect(r.stdout).toMatch(/^OK: every check passed/m);
    },
    65_000,
  );

  it('without a GPU the demo says so and runs 4 CPU ranks', async () => {
    const r = await runNode(['--import', 'tsx', 'examples/quickstart.ts'], 60_000, { GPUGROUP_STUB_GPUS: '0' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backend +cpu \(no GPU visible\)/);
    const refused = await runNode(['--import', 'tsx', 'examples/quickstart.ts', '--backend', 'nccl'], 60_000, {
      GPUGROUP_STUB_GPUS: '0',
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--backend nccl needs a GPU, none visible/);
  }, 125_000);
});
