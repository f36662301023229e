/** The context every worker function receives first. */
import type { DeviceCommunicator } from '../comm/index.ts';
import type { GroupCoordinator } from '../parallel/index.ts';
import type { StatelessProcessGroup, Store } from '../store/index.ts';

/** What a rank knows about itself and its groups. */
export interface RankContext {
  /** Global rank. */
  rank: number;
  worldSize: number;
  /** Rank on this node. */
  localRank: number;
  nodeRank: number;
  /** `cuda:N` or `cpu`. */
  device: string;
  backend: 'nccl' | 'cpu';
  /** Deadline of calls and blocking waits, in ms. */
  timeoutMs: number;
  /** The job's store client. */
  store: Store;
  /** The world's control plane (objects, barriers). */
  processGroup: StatelessProcessGroup;
  /** The world's data plane (NCCL or CPU), null at world size 1. */
  communicator: DeviceCommunicator | null;
  /** Groups, each a GroupCoordinator (vLLM's layout). */
  world: GroupCoordinator;
  tp: GroupCoordinator;
  pp: GroupCoordinator;
  dp: GroupCoordinator;
  ep: GroupCoordinator;
  /** Fires when a peer died or the group is shutting down. */
  abortSignal: AbortSignal;
  /** Waits until this rank's device work has finished (no-op on the CPU backend). */
  synchronize(): Promise<void>;
}
