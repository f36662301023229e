/** src/comm/: the communicators (vllm/distributed/device_communicators/): base semantics, NCCL and CPU backends. */
export { DeviceCommunicator } from './device-communicator.ts';
export { createCommunicator, split } from './factory.ts';
export type { CommunicatorOptions, SplitOptions } from './factory.ts';
export type { ReduceOp, CommunicatorInfo } from './device-communicator.ts';
export { NcclCommunicator } from './nccl-communicator.ts';
export type { NcclCommunicatorOptions } from './nccl-communicator.ts';
export { CpuCommunicator } from './cpu-communicator.ts';
export type { CpuCommunicatorOptions } from './cpu-communicator.ts';
export type { CpuTransport } from './cpu-segments.ts';
export { FlightRecorder } from './flight-recorder.ts';
export { withCallDeadline, callDeadline, opDeadline } from './call-deadline.ts';
export { MessageQueue } from './message-queue.ts';
export type { MessageQueueOptions } from './message-queue.ts';
export { removeSegmentsOf, nodeKey } from './shm.ts';
