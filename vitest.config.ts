import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The package's own name resolves to its sources (as tsconfig.json's paths do for tsc and tsx).
const resolve = {
  alias: [
    { find: /^gpugroup$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
    { find: /^gpugroup\/native$/, replacement: fileURLToPath(new URL('./native/index.ts', import.meta.url)) },
  ],
};

// Two projects: `cpu` runs in CI on any machine; `gpu` holds the tests that need a CUDA
// device and skip themselves when none is visible. GPU files run one at a time so that
// they never fight over devices.
export default defineConfig({
  test: {
    projects: [
      {
        resolve,
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
        resolve,
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
