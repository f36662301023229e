/** A TCP port nobody listens on right now, for a store's `masterPort`. */
import { createServer } from 'node:net';

/**
 * Asks the OS for an ephemeral port on `host` and releases it. Another process may take
 * it before you bind it: good for tests, examples and single-host jobs, as torch's
 * `_get_open_port`.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
