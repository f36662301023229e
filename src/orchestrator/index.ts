/** src/orchestrator/: launchGroup(), the Group handle and the rank context. */
export { launchGroup } from './launch.ts';
export { Group } from './group.ts';
export type { CallOptions, GroupEvents, RankExitEvent, RankLogEvent } from './group.ts';
export type { LaunchOptions } from './options.ts';
export type { RankContext } from './context.ts';
