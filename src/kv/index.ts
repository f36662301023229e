/** src/kv/: the KV-cache transfer pipe of disaggregated prefill (vllm-spec §10). */
export { NcclPipe } from './nccl-pipe.ts';
export type { NcclPipeOptions, KVPipeBase } from './nccl-pipe.ts';
