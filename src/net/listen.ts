/** The one way gpugroup listens: on a given or an ephemeral port, resolved once bound. */
import { createServer, type Server } from 'node:net';

/** Options of {@link listenOn}. */
export interface ListenOptions {
  /** Port to bind; 0 (the default) asks the OS for an ephemeral one. */
  port?: number;
  /** Length of the accept queue (Node's default is 511). */
  backlog?: number;
}

/**
 * A TCP server listening on `host`, with Nagle off on its connections. Resolves once
 * bound, with the bound port; rejects with the bind error (EADDRINUSE, EADDRNOTAVAIL).
 */
export function listenOn(host: string, opts: ListenOptions = {}): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer({ noDelay: true });
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0, backlog: opts.backlog }, () => {
      server.off('error', reject);
      resolve({ server, port: (server.address() as { port: number }).port });
    });
  });
}

/**
 * Asks the OS for an ephemeral port on `host` and releases it. Another process may take
 * it before you bind it: good for tests, examples and single-host jobs, as torch's
 * `_get_open_port`.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const { server, port } = await listenOn(host);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
