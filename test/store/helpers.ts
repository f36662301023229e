/** Shared helpers of the store tests: servers and clients that clean themselves up. */
import { afterEach } from 'vitest';
import { TcpStoreClient, TcpStoreServer, type StoreServerOptions } from '../../src/store/index.ts';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** Registers `fn` to run after the current test (last registered runs first). */
export function onCleanup(fn: () => unknown): void {
  cleanup.push(fn);
}

/** A loopback server on an ephemeral port, closed after the test. */
export async function startServer(opts: StoreServerOptions = {}): Promise<TcpStoreServer> {
  const server = await TcpStoreServer.listen(opts);
  onCleanup(() => server.close());
  return server;
}

/** `n` clients of `server`, closed after the test. */
export async function connectClients(server: TcpStoreServer, n: number, timeoutMs = 5_000): Promise<TcpStoreClient[]> {
  const clients = await Promise.all(
    Array.from({ length: n }, () => TcpStoreClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs })),
  );
  onCleanup(() => Promise.all(clients.map((c) => c.close())));
  return clients;
}

/** UTF-8 text of store bytes. */
export const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/** Resolves when `cond()` holds, polling every 5 ms; rejects after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A port that was free a moment ago (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const s = await TcpStoreServer.listen();
  const port = s.port;
  await s.close();
  return port;
}
