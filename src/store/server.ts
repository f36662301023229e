/**
 * The store server (the role torch's TCPStore master plays): an in-memory map of
 * byte values with blocking gets, served over node:net. A bad client — garbage
 * bytes, an oversized frame, a vanished socket — gets an error frame and is dropped;
 * the map and every other client are untouched.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { log } from '../log.ts';
import { FrameReader, MalformedFrameError, Op, Status, encodeFrame, type Frame } from './protocol.ts';

/** Options of {@link TcpStoreServer.listen}. */
export interface StoreServerOptions {
  /** Address to bind; loopback unless told otherwise. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Largest frame accepted (value plus key plus headers). Default 1 GiB. */
  maxFrameBytes?: number;
}

interface ParkedGet {
  socket: Socket;
  id: number;
}

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** A TCP key-value store server. */
export class TcpStoreServer {
  readonly host: string;
  readonly port: number;
  private readonly server: Server;
  private readonly data = new Map<string, Uint8Array>();
  private readonly parked = new Map<string, Set<ParkedGet>>();
  private readonly sockets = new Set<Socket>();
  private closed: Promise<void> | null = null;

  private constructor(server: Server, host: string, port: number, private readonly maxFrameBytes: number) {
    this.server = server;
    this.host = host;
    this.port = port;
  }

  /** Starts a server and resolves once it listens. */
  static listen(opts: StoreServerOptions = {}): Promise<TcpStoreServer> {
    const host = opts.host ?? '127.0.0.1';
    const maxFrameBytes = opts.maxFrameBytes ?? 2 ** 30;
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen({ host, port: opts.port ?? 0, exclusive: true }, () => {
        server.off('error', reject);
        const address = server.address();
        const port = typeof address === 'object' && address ? address.port : 0;
        const store = new TcpStoreServer(server, host, port, maxFrameBytes);
        server.on('connection', (socket) => store.accept(socket));
        server.on('error', (err) => log('error', 'store', `server error: ${err.message}`));
        resolve(store);
      });
    });
  }

  /** Number of keys held (for tests and diagnostics). */
  get size(): number {
    return this.data.size;
  }

  /** Stops listening and drops every client; idempotent. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      for (const socket of this.sockets) socket.destroy();
      this.server.close(() => resolve());
    });
    return this.closed;
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const reader = new FrameReader(this.maxFrameBytes);
    socket.on('data', (chunk) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        this.drop(socket, err instanceof MalformedFrameError ? err.message : String(err));
        return;
      }
      for (const frame of frames) {
        try {
          this.handle(socket, frame);
        } catch (err) {
          this.reply(socket, frame.id, Status.error, [encoder.encode((err as Error).message)]);
        }
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.sockets.delete(socket);
      for (const waiters of this.parked.values()) for (const w of waiters) if (w.socket === socket) waiters.delete(w);
    });
  }

  private handle(socket: Socket, { code, id, fields }: Frame): void {
    const key = (i = 0): string => {
      if (fields.length <= i) throw new Error(`op ${code}: missing field ${i}`);
      return fields[i].toString('utf8');
    };
    switch (code) {
      case Op.set:
        this.set(key(), fields[1] ?? EMPTY);
        this.reply(socket, id, Status.ok, []);
        return;
      case Op.get: {
        const k = key();
        const value = this.data.get(k);
        if (value !== undefined) this.reply(socket, id, Status.ok, [value]);
        else {
          let waiters = this.parked.get(k);
          if (!waiters) this.parked.set(k, (waiters = new Set()));
          waiters.add({ socket, id });
        }
        return;
      }
      case Op.cancel: {
        // The client gave up on a parked get (its deadline passed): forget it.
        const k = key();
        const waiters = this.parked.get(k);
        if (waiters) for (const w of waiters) if (w.socket === socket && w.id === id) waiters.delete(w);
        return;
      }
      case Op.add: {
        const k = key();
        const delta = Number(fields[1]?.toString('ascii'));
        if (!Number.isSafeInteger(delta)) throw new Error(`add: delta is not an integer`);
        const current = this.data.get(k);
        const base = current === undefined ? 0 : Number(Buffer.from(current).toString('ascii'));
        if (!Number.isSafeInteger(base)) throw new Error(`add: key '${k}' does not hold an integer`);
        const next = encoder.encode(String(base + delta));
        this.set(k, next);
        this.reply(socket, id, Status.ok, [next]);
        return;
      }
      case Op.compareSet: {
        const k = key();
        const expected = fields[1] ?? EMPTY;
        const desired = fields[2] ?? EMPTY;
        const current = this.data.get(k);
        // torch's semantics: a missing key with an empty expectation is set.
        if ((current === undefined && expected.length === 0) || (current !== undefined && Buffer.compare(current, expected) === 0)) {
          this.set(k, Uint8Array.from(desired));
          this.reply(socket, id, Status.ok, [desired]);
        } else {
          this.reply(socket, id, Status.ok, [current ?? expected]);
        }
        return;
      }
      case Op.delete:
        this.reply(socket, id, Status.ok, [Uint8Array.of(this.data.delete(key()) ? 1 : 0)]);
        return;
      case Op.numKeys:
        this.reply(socket, id, Status.ok, [encoder.encode(String(this.data.size))]);
        return;
      case Op.check:
        this.reply(socket, id, Status.ok, [Uint8Array.of(fields.every((f) => this.data.has(f.toString('utf8'))) ? 1 : 0)]);
        return;
      default:
        throw new Error(`unknown op ${code}`);
    }
  }

  private set(key: string, value: Uint8Array): void {
    // Copy: `value` is a view into the socket's receive buffer.
    const stored = Uint8Array.from(value);
    this.data.set(key, stored);
    const waiters = this.parked.get(key);
    if (!waiters) return;
    this.parked.delete(key);
    for (const w of waiters) this.reply(w.socket, w.id, Status.ok, [stored]);
  }

  private reply(socket: Socket, id: number, status: number, fields: Uint8Array[]): void {
    if (!socket.destroyed) socket.write(encodeFrame(status, id, fields));
  }

  private drop(socket: Socket, reason: string): void {
    log('warn', 'store', `dropping client ${socket.remoteAddress}:${socket.remotePort}: ${reason}`);
    this.reply(socket, 0, Status.error, [encoder.encode(`protocol error: ${reason}`)]);
    socket.end();
    socket.destroySoon();
  }
}
