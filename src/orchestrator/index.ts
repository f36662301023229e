/** src/orchestrator/: launchGroup(), the Group handle and the rank context. */
export { launchGroup, Group } from './group.ts';
export type { RankExitEvent } from './group.ts';
export type { LaunchOptions } from './options.ts';
export type { RankContext } from './context.ts';
