/** src/store/: the TCP key-value store and StatelessProcessGroup (vllm-spec §5). */
export { TcpStoreServer } from './server.ts';
export type { StoreServerOptions } from './server.ts';
export { TcpStoreClient, PrefixStore } from './client.ts';
export type { Store, StoreClientOptions } from './client.ts';
export { StatelessProcessGroup } from './stateless-group.ts';
export type { StatelessGroupOptions, FromStoreOptions } from './stateless-group.ts';
