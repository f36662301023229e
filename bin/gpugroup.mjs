#!/usr/bin/env node
// The `gpugroup` command. TypeScript runs without a build step: register tsx's hooks,
// then hand over to src/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
// Exit as soon as the run is over: a store connection still being retried (a node that
// never saw its peers' store) must not keep the launcher alive. stdout/stderr are
// synchronous on files and pipes here, so nothing written is lost.
process.exit(await main(process.argv.slice(2)));
