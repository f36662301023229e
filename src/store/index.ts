/**
 * src/store/: the rendezvous layer — a TCP key-value store (the role torch's TCPStore
 * plays) and vLLM's StatelessProcessGroup on top of it (vllm/distributed/utils.py).
 */
export { TcpStoreServer } from './server.ts';
export type { StoreServerOptions } from './server.ts';
export { TcpStoreClient } from './client.ts';
export type { StoreClientOptions } from './client.ts';
export { PrefixStore } from './store.ts';
export type { Store } from './store.ts';
export { StatelessProcessGroup } from './stateless-group.ts';
export type { StatelessGroupOptions, FromStoreOptions } from './stateless-group.ts';
export { storeBarrier } from './barrier.ts';
export type { StoreBarrierOptions } from './barrier.ts';
export { freePort } from '../net/index.ts';
export { listenInThread } from './server-thread.ts';
export type { ThreadedStoreServer } from './server-thread.ts';
