/** src/cli/: the `gpugroup` command line (bin/gpugroup.mjs), torchrun-style `gpugroup run`. */
export { main } from './main.ts';
export { parseRunArgs, RUN_USAGE, DEFAULT_MULTI_NODE_PORT } from './args.ts';
export type { RunOptions, ParsedRun } from './args.ts';
export { planRun, rankEnv, runRanks, describeExit } from './run.ts';
export type { RunPlan, RankExit, RunResult, Log } from './run.ts';
