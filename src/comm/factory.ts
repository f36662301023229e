/**
 * The one place a backend is chosen: layers above ask for a communicator of a backend
 * and never name or test a concrete class (as vLLM's platform picks the device
 * communicator class once, `vllm/distributed/device_communicators/`).
 */
import { InvalidArgumentError } from '../errors.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { CpuCommunicator } from './cpu-communicator.ts';
import type { CpuTransport } from './cpu-segments.ts';
import type { DeviceCommunicator } from './device-communicator.ts';
import { NcclCommunicator, type NcclSplitOptions } from './nccl-communicator.ts';

/** Options of {@link createCommunicator}. */
export interface CommunicatorOptions {
  /** `nccl` (tensors on `device`) or `cpu` (host tensors). Default: `cpu` for device `cpu`, else `nccl`. */
  backend?: 'nccl' | 'cpu';
  /** `cpu` or `cuda:N` (the NCCL backend's device: this thread's current one). */
  device: string;
  /** Control plane of the group: its rank, world size and store. */
  group: StatelessProcessGroup;
  /** Name used in errors and logs, e.g. `tp:0`. */
  groupName: string;
  /** Deadline of every operation, in ms. Default 120 000. */
  timeoutMs?: number;
  /** Deadline of the creation, in ms (NCCL init or split). Default: timeoutMs. */
  initTimeoutMs?: number;
  /** When it fires, pending and later operations fail. */
  abortSignal?: AbortSignal;
  /** NCCL: keep what {@link split} needs to split subgroups from this communicator. */
  splittable?: boolean;
  /** CPU: the shared-memory transport (`sab` or `shm`); default by where the ranks run. */
  transport?: CpuTransport;
}

/** A communicator of `opts.backend` for the group. Collective: every rank of the group calls it. */
export async function createCommunicator(opts: CommunicatorOptions): Promise<DeviceCommunicator> {
  const backend = opts.backend ?? (opts.device === 'cpu' ? 'cpu' : 'nccl');
  const common = {
    group: opts.group,
    groupName: opts.groupName,
    timeoutMs: opts.timeoutMs,
    abortSignal: opts.abortSignal,
  };
  if (backend === 'cpu') return CpuCommunicator.create({ ...common, transport: opts.transport });
  return NcclCommunicator.create({
    ...common,
    device: opts.device,
    initTimeoutMs: opts.initTimeoutMs,
    splittable: opts.splittable,
  });
}

/** Options of {@link split}: the new group, this rank's color and key, deadlines. */
export type SplitOptions = NcclSplitOptions;

/**
 * A subgroup communicator split from `parent` (ncclCommSplit), or null for a rank that
 * joins none. Collective over the parent's ranks. Only communicators made splittable by
 * {@link createCommunicator} on the NCCL backend can be split; others reject.
 */
export async function split(parent: DeviceCommunicator, opts: SplitOptions): Promise<DeviceCommunicator | null> {
  if (!(parent instanceof NcclCommunicator)) {
    throw new InvalidArgumentError(
      'parent',
      `the communicator of group '${parent.groupName}' cannot be split: only NCCL communicators split (ncclCommSplit)`,
    );
  }
  return parent.split(opts);
}
