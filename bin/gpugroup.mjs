#!/usr/bin/env node
// The `gpugroup` command. An installed package runs the compiled CLI in dist/ with plain
// Node; a source checkout runs src/cli/main.ts through tsx, with no build step.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (existsSync(source)) {
  (await import('tsx/esm/api')).register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import('../dist/src/cli/main.js'));
}
// Exit as soon as the run is over: a store connection still being retried (a node that
// never saw its peers' store) must not keep the launcher alive. stdout/stderr are
// synchronous on files and pipes here, so nothing written is lost.
process.exit(await main(process.argv.slice(2)));
