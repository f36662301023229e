// Ranks of a CPU communicator inside one thread: n instances over StatelessProcessGroups
// on one store. Their waits are asynchronous, so they all progress on one event loop.
import { afterAll, beforeAll } from 'vitest';
import { CpuCommunicator, type CpuCommunicatorOptions } from '../../src/comm/index.ts';
import { StatelessProcessGroup, TcpStoreClient, TcpStoreServer } from '../../src/store/index.ts';
import { Tensor, type DType } from '../../src/tensor/index.ts';

let server: TcpStoreServer;
let client: TcpStoreClient;
let groups = 0;
const open: CpuCommunicator[] = [];

/** Starts one store for the file; destroys every communicator left at the end. */
export function useStore(): void {
  beforeAll(async () => {
    server = await TcpStoreServer.listen();
    client = await TcpStoreClient.connect({ host: '127.0.0.1', port: server.port });
  });
  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.destroy()));
    await client.close();
    await server.close();
  });
}

/** The control planes of `ranks.length` ranks of a fresh group (ranks: the members' labels). */
export function groupsOf(world: number): StatelessProcessGroup[] {
  const store = client.withPrefix(`g${groups++}`);
  return Array.from({ length: world }, (_, r) =>
    StatelessProcessGroup.fromStore(store, r, world, { storeTimeoutMs: 10_000 }),
  );
}

/** `world` communicators of one fresh group, created together (creation is collective). */
export async function makeComms(world: number, opts: Partial<CpuCommunicatorOptions> = {}): Promise<CpuCommunicator[]> {
  const gs = groupsOf(world);
  const name = opts.groupName ?? `test${groups}`;
  const comms = await Promise.all(
    gs.map((group) => CpuCommunicator.create({ timeoutMs: 10_000, ...opts, group, groupName: name })),
  );
  open.push(...comms);
  return comms;
}

/** Destroys `comms` now (and forgets them). */
export async function destroyAll(comms: CpuCommunicator[]): Promise<void> {
  for (const c of comms) open.splice(open.indexOf(c), 1);
  await Promise.all(comms.map((c) => c.destroy()));
}

/** Rank r's input: (i % 50) + 10 r (as the launchGroup fixture makes it), or `f(i, r)`. */
export function input(rank: number, shape: number[], dtype: DType, f?: (i: number, r: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, (_, i) => (f ? f(i, rank) : (i % 50) + 10 * rank));
  return Tensor.fromArray(dtype === 'int64' ? values.map(BigInt) : values, { shape, dtype });
}

/** A tensor's values as plain numbers. */
export async function values(t: Tensor | null): Promise<number[] | null> {
  if (t === null) return null;
  return Array.from((await t.toArray()) as ArrayLike<number | bigint>, Number);
}
