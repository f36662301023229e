#!/usr/bin/env node
// The `gpugroup` command. TypeScript runs without a build step: register tsx's hooks,
// then hand over to src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
