/**
 * A store server hosted in a worker thread of this process. The rank that serves a
 * job's store (rank 0 of a StatelessProcessGroup, SPMD rank 0) runs user code and
 * native calls on its own thread; NCCL blocks that thread while it opens a connection
 * to a peer, and a peer waiting on the store for what it needs to join would then wait
 * forever. torch's TCPStore serves from a background thread for the same reason.
 */
import { Worker } from 'node:worker_threads';
import { StoreError } from '../errors.ts';
import { findTsx, fromSources, ownExtension } from '../loader.ts';
import type { StoreServerOptions } from './server.ts';

const entry = new URL('../../workers/store-server-thread.mjs', import.meta.url);
const server = new URL(`./server${ownExtension}`, import.meta.url).href;

/** What the owner holds of a thread-hosted server. */
export interface ThreadedStoreServer {
  readonly host: string;
  readonly port: number;
  /** Closes the server (its clients' calls fail) and ends the thread; idempotent. */
  close(): Promise<void>;
  /** Whether the server's thread keeps this process's event loop alive (it does until told otherwise). */
  holdLoop(hold: boolean): void;
}

/** Starts a TcpStoreServer in a worker thread; resolves once it listens. */
export function listenInThread(opts: StoreServerOptions = {}, startTimeoutMs = 30_000): Promise<ThreadedStoreServer> {
  const host = opts.host ?? '127.0.0.1';
  const worker = new Worker(entry, {
    workerData: { tsx: fromSources ? findTsx(server)?.api : undefined, server, options: opts },
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new StoreError(`store server thread did not start within ${startTimeoutMs} ms`));
    }, startTimeoutMs);
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(new StoreError(`store server thread failed: ${err.message}`, { cause: err }));
    });
    worker.once('message', (msg: { port?: number; error?: string }) => {
      clearTimeout(timer);
      if (msg.error !== undefined || msg.port === undefined) {
        void worker.terminate();
        reject(new StoreError(msg.error ?? 'store server thread sent no port'));
        return;
      }
      let closing: Promise<void> | null = null;
      resolve({
        host,
        port: msg.port,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            // Held until the thread is gone, so the caller's await is not cut short.
            worker.ref();
            worker.once('exit', () => done());
            worker.postMessage('close');
          })),
        holdLoop: (hold) => (hold ? worker.ref() : worker.unref()),
      });
    });
  });
}
