/** src/kv/: the KV-cache transfer pipe of disaggregated prefill (vLLM's kv_transfer/kv_pipe/pynccl_pipe.py). */
export { NcclPipe } from './nccl-pipe.ts';
export type { NcclPipeOptions, KVPipeBase } from './nccl-pipe.ts';
