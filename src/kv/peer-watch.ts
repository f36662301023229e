/**
 * Notices a KV-pipe peer that died, without help from an orchestrator: kvRank 0 listens
 * on an ephemeral TCP port (published through the pipe's group) and every other rank
 * keeps one idle connection to it. The kernel closes a dead process's sockets, so the
 * other end sees 'close' at once, where the data plane would only notice at its
 * deadline (a CPU channel waiting for a reader, an NCCL send to a gone peer).
 *
 * Coverage: kvRank 0 notices any peer; the others notice kvRank 0 (they also lose its
 * store). With the usual 2-rank pipe every death is seen on both sides. The sockets are
 * unref'd: an unclosed pipe does not keep a process alive for them.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { StatelessProcessGroup } from '../store/index.ts';

/** Called once, with a description of the peer that went away. */
export type PeerLost = (what: string) => void;

/** The watch of one pipe's peers. */
export class PeerWatch {
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  private closed = false;

  private constructor(private readonly onLost: PeerLost) {}

  /** Collective over `group` (every rank calls it); resolves once this rank is watching. */
  static async open(
    group: StatelessProcessGroup,
    host: string,
    timeoutMs: number,
    onLost: PeerLost,
  ): Promise<PeerWatch> {
    const watch = new PeerWatch(onLost);
    try {
      if (group.rank === 0) {
        const server = createServer((socket) => watch.track(socket, 'a peer rank'));
        watch.server = server;
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, host, () => resolve());
        });
        server.unref();
        await group.broadcastObj((server.address() as { port: number }).port, 0);
      } else {
        const port = await group.broadcastObj<number>(null, 0);
        const socket = connect({ host, port });
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`no connection to ${host}:${port} within ${timeoutMs} ms`)),
            timeoutMs,
          );
          socket.once('connect', () => {
            clearTimeout(timer);
            resolve();
          });
          socket.once('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        });
        // The first byte names this rank to kvRank 0, for its message.
        socket.write(`${group.rank}\n`);
        watch.track(socket, 'kvRank 0');
      }
      return watch;
    } catch (err) {
      watch.close();
      throw err;
    }
  }

  private track(socket: Socket, who: string): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.unref();
    socket.setKeepAlive(true, 1_000);
    let peer = who;
    socket.on('data', (chunk: Buffer) => {
      const rank = /^(\d+)\n/.exec(chunk.toString('latin1'));
      if (rank) peer = `kvRank ${rank[1]}`;
    });
    const lost = (why: string) => {
      if (this.closed) return;
      this.close();
      this.onLost(`the connection to ${peer} ${why}`);
    };
    socket.on('error', (err) => lost(`failed (${err.message})`));
    socket.on('close', () => lost('closed'));
  }

  /** Stops watching (idempotent); closing the sockets is no longer reported. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.server?.close();
  }
}
