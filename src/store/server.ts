/**
 * The store server (the role torch's TCPStore master plays): an in-memory map of byte
 * values served over node:net. A get of a missing key is parked and answered when the
 * key is set — no polling. The client owns the deadline and cancels what it gave up on.
 *
 * A bad client cannot hurt the others: a frame over the size limit is skipped and
 * answered with an error; a malformed field gets an error reply; bytes that are not
 * frames (bad length, unknown op) get an error frame and the connection is dropped.
 * Every handler is guarded, so the server never throws into the process.
 */
import type { Server, Socket } from 'node:net';
import { InvalidArgumentError, StoreError } from '../errors.ts';
import { log } from '../log.ts';
import { listenOn } from '../net/index.ts';
import { Connection } from './server-connection.ts';
import { MAX_FRAME_BYTES } from './protocol.ts';
import { KeyValueState } from './server-state.ts';

/** Options of {@link TcpStoreServer.listen}. */
export interface StoreServerOptions {
  /** Address to bind. Default `127.0.0.1`: loopback unless told otherwise. */
  host?: string;
  /** Port to bind; 0 (default) picks a free one. */
  port?: number;
  /** Largest value accepted. Default 1 GiB; frames may add 1 MiB of keys and headers. */
  maxValueBytes?: number;
}

const KEY_ALLOWANCE_BYTES = 1 << 20;

/** A TCP key-value store server. */
export class TcpStoreServer {
  /** The bound address. */
  readonly host: string;
  /** The bound port (the chosen one when listening on port 0). */
  readonly port: number;
  /** Largest value accepted. */
  readonly maxValueBytes: number;
  private readonly state = new KeyValueState();
  private readonly connections = new Set<Connection>();
  private closing: Promise<void> | null = null;
  private holdsLoop = true;

  private constructor(
    private readonly server: Server,
    host: string,
    port: number,
    maxValueBytes: number,
  ) {
    this.host = host;
    this.port = port;
    this.maxValueBytes = maxValueBytes;
  }

  /**
   * Binds and resolves once listening. Rejects with StoreError when the address
   * cannot be bound (in use, not local).
   */
  static listen(opts: StoreServerOptions = {}): Promise<TcpStoreServer> {
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? 0;
    const maxValueBytes = opts.maxValueBytes ?? 2 ** 30;
    if (
      !Number.isInteger(maxValueBytes) ||
      maxValueBytes < 0 ||
      maxValueBytes + KEY_ALLOWANCE_BYTES > MAX_FRAME_BYTES
    ) {
      return Promise.reject(
        new InvalidArgumentError(
          'maxValueBytes',
          `must be an integer in [0, ${MAX_FRAME_BYTES - KEY_ALLOWANCE_BYTES}], got ${maxValueBytes}`,
        ),
      );
    }
    if (!Number.isInteger(port) || port < 0 || port > 65_535)
      return Promise.reject(new InvalidArgumentError('port', `must be an integer in [0, 65535], got ${port}`));
    // A deep backlog: every rank of a large job connects at once, and an overflowing
    // accept queue costs each extra client a 1 s SYN retransmit.
    return listenOn(host, { port, backlog: 4096 }).then(
      ({ server, port: bound }) => {
        const store = new TcpStoreServer(server, host, bound, maxValueBytes);
        server.on('connection', (socket) => store.accept(socket));
        server.on('error', (err) => log('error', 'store', `server ${host}:${bound}: ${err.message}`));
        log('debug', 'store', `listening on ${host}:${bound}`);
        return store;
      },
      (err: Error) => {
        throw new StoreError(`store could not listen on ${host}:${port}: ${err.message}`, { cause: err });
      },
    );
  }

  /** Number of keys held. */
  get size(): number {
    return this.state.data.size;
  }

  /** Number of gets and waits parked now (diagnostics; 0 when nobody waits). */
  get parkedWaits(): number {
    let n = 0;
    for (const c of this.connections) n += c.waiters.size;
    return n;
  }

  /** Number of client connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Whether the listening socket and the client connections keep this process's event
   * loop alive (they do until told otherwise). The owners of a job's store let go of
   * the loop: it stays served as long as the process runs for other reasons, and the
   * owner itself decides when it may end (launchGroup's Group, initDistributedEnvironment).
   */
  holdLoop(hold: boolean): void {
    this.holdsLoop = hold;
    if (hold) this.server.ref();
    else this.server.unref();
    for (const c of this.connections) {
      if (hold) c.socket.ref();
      else c.socket.unref();
    }
  }

  /**
   * Stops listening and destroys every client connection (their pending calls fail
   * with StoreError). Resolves once the listening socket is closed; idempotent.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.ref(); // the caller's await holds the loop until the socket is closed
      this.server.close(() => resolve());
      for (const c of this.connections) c.socket.destroy();
      this.connections.clear();
      this.state.clear();
    });
    return this.closing;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    if (!this.holdsLoop) socket.unref();
    const conn = new Connection(this.state, socket, this.maxValueBytes, this.maxValueBytes + KEY_ALLOWANCE_BYTES);
    this.connections.add(conn);
    socket.once('close', () => {
      this.connections.delete(conn);
      conn.dropWaiters();
    });
  }
}
