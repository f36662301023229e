import { defineConfig } from 'vitest/config';

// Two projects: `cpu` runs in CI on any machine; `gpu` holds the tests that need a CUDA
// device and skip themselves when none is visible. GPU files run one at a time so that
// they never fight over devices.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'cpu',
          include: ['test/**/*.test.ts'],
          exclude: ['test/gpu/**'],
          pool: 'forks',
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'gpu',
          include: ['test/gpu/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
