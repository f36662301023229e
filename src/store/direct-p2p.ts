/**
 * Point-to-point objects over direct TCP connections, for a StatelessProcessGroup made
 * with `directPointToPoint`. Every rank listens on an ephemeral port of the interface
 * that reaches the store and publishes the address there (`p2p_addr/{rank}`); the
 * first send to a rank connects to it and names the sender in a Hello frame; messages
 * then flow as frames on that connection, in order, with no store round trip (through
 * the store a message costs a write, an acknowledgement, a read and its reply, and
 * two hops through the server). The store still carries the addresses, broadcasts and
 * barriers.
 *
 * Semantics match the store path: a send does not wait for the receiver (the bytes
 * wait in the receiver's queue, as they would in the store); receives from one rank
 * come in the order sent; a receive that times out consumes nothing, so a retry gets
 * the same message. A peer that closes its group says goodbye: waiting receives from
 * it fail with GroupClosedError; one that dies fails them too, saying so.
 */
import type { Server, Socket } from 'node:net';
import { ConnectTimeoutError, GroupClosedError, StoreTimeoutError } from '../errors.ts';
import { connectBy, Frame, FrameSocket, listenOn, receiveHello, sendHello } from '../net/index.ts';
import type { Store } from './store.ts';

const addressKey = (rank: number): string => `p2p_addr/${rank}`;

/** The direct connections of one rank of a group. */
export class DirectChannels {
  private readonly outbound = new Map<number, Promise<FrameSocket>>();
  private readonly inbound = new Map<number, FrameSocket>();
  /** Receivers waiting for the first connection from a rank. */
  private readonly arrivals = new Map<number, Set<() => void>>();
  /** The latest receive from each rank: receives from one rank run one after another. */
  private readonly recvTail = new Map<number, Promise<unknown>>();
  private readonly accepted = new Set<Socket>();
  private failure: Error | null = null;

  private constructor(
    private readonly server: Server,
    private readonly store: Store,
    private readonly rank: number,
    private readonly timeoutMs: number,
  ) {}

  /** Listens on `host` (an ephemeral port) and publishes the address; every rank of the group calls it. */
  static async open(store: Store, rank: number, host: string, timeoutMs: number): Promise<DirectChannels> {
    const { server, port } = await listenOn(host);
    server.unref();
    const channels = new DirectChannels(server, store, rank, timeoutMs);
    server.on('connection', (socket) => channels.accept(socket));
    try {
      await store.set(addressKey(rank), new TextEncoder().encode(JSON.stringify({ host, port })));
    } catch (err) {
      channels.close();
      throw err;
    }
    return channels;
  }

  /**
   * Sends one message to `dst`; resolves once all of it is in the kernel, so the caller
   * may block its thread next (a blocking NCCL call) without holding the message back.
   */
  async send(dst: number, bytes: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    let link = this.outbound.get(dst);
    if (!link) {
      link = this.connectTo(dst);
      link.catch(() => this.outbound.delete(dst));
      this.outbound.set(dst, link);
    }
    const socket = await link;
    socket.send(Frame.Data, bytes);
    if (socket.backlog > 0) {
      await socket.drained(
        performance.now() + this.timeoutMs,
        () => new StoreTimeoutError(`p2p/${this.rank}->${dst}`, this.timeoutMs, 'direct send'),
      );
    }
  }

  /**
   * The next message from `src`, or StoreTimeoutError past `timeoutMs` (from this call).
   * A receive that fails consumes nothing.
   */
  recv(src: number, timeoutMs: number): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    const timeout = () =>
      new StoreTimeoutError(`direct message from rank ${src} to rank ${this.rank}`, timeoutMs, 'recv');
    const previous = this.recvTail.get(src) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        const link = await this.connectionFrom(src, deadline, timeout);
        return (await link.next(deadline, timeout)).body;
      });
    this.recvTail.set(src, next);
    return next;
  }

  /** Says goodbye on every connection and stops listening; later calls fail. Idempotent. */
  close(): void {
    if (this.failure) return;
    this.failure = new GroupClosedError(`the direct connections of rank ${this.rank} are closed`);
    this.server.close();
    for (const link of this.outbound.values())
      link.then(
        (l) => l.close(this.failure!),
        () => undefined,
      );
    for (const link of this.inbound.values()) link.close(this.failure);
    for (const socket of this.accepted) socket.destroy();
    for (const wake of [...this.arrivals.values()].flatMap((s) => [...s])) wake();
  }

  private async connectTo(dst: number): Promise<FrameSocket> {
    const raw = await this.store.get(addressKey(dst), this.timeoutMs);
    const { host, port } = JSON.parse(new TextDecoder().decode(raw)) as { host: string; port: number };
    const socket = await connectBy(
      host,
      port,
      performance.now() + this.timeoutMs,
      () => new ConnectTimeoutError(`${host}:${port}`, this.timeoutMs, `direct connection to rank ${dst}`),
    );
    socket.unref();
    const link = new FrameSocket(socket, (orderly) => lost(dst, orderly));
    sendHello(link, this.rank);
    return link;
  }

  private accept(socket: Socket): void {
    if (this.failure) {
      socket.destroy();
      return;
    }
    socket.unref();
    this.accepted.add(socket);
    let src = -1;
    const link = new FrameSocket(socket, (orderly) => lost(src, orderly));
    // The first frame names the sender; until then the link belongs to nobody.
    const deadline = performance.now() + this.timeoutMs;
    receiveHello(
      link,
      deadline,
      () => new ConnectTimeoutError(describePeer(socket), this.timeoutMs, 'hello from a connecting rank'),
    ).then(
      (hello) => {
        this.accepted.delete(socket);
        if (hello === null || this.failure) {
          socket.destroy();
          return;
        }
        src = hello;
        this.inbound.set(src, link);
        for (const wake of this.arrivals.get(src) ?? []) wake();
        this.arrivals.delete(src);
      },
      () => {
        this.accepted.delete(socket);
        socket.destroy();
      },
    );
  }

  private connectionFrom(src: number, deadline: number, timeout: () => Error): Promise<FrameSocket> {
    const ready = this.inbound.get(src);
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiters = this.arrivals.get(src) ?? new Set<() => void>();
      this.arrivals.set(src, waiters);
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        const link = this.inbound.get(src);
        if (link) resolve(link);
        else reject(this.failure ?? timeout());
      };
      const timer = setTimeout(
        () => {
          waiters.delete(wake);
          reject(timeout());
        },
        Math.max(0, deadline - performance.now()),
      );
      waiters.add(wake);
    });
  }
}

function describePeer(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

function lost(rank: number, orderly: boolean): Error {
  return new GroupClosedError(
    orderly ? `rank ${rank} closed its group` : `the connection to rank ${rank} was lost (its process may have died)`,
  );
}
