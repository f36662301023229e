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
import type { Server, Socket } from 'node:net';
import { ConnectTimeoutError, GroupClosedError } from '../errors.ts';
import { connectBy, FrameSocket, listenOn, receiveHello, sendHello } from '../net/index.ts';
import type { StatelessProcessGroup } from '../store/index.ts';

/** Called once, with a description of the peer that went away. */
export type PeerLost = (what: string) => void;

/** The watch of one pipe's peers. */
export class PeerWatch {
  private readonly links = new Set<FrameSocket>();
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
        const { server, port } = await listenOn(host);
        watch.server = server;
        server.on('connection', (socket) => {
          // The hello names the peer for the message; a peer lost before it is 'a peer rank'.
          const link = watch.track(socket, 'a peer rank');
          receiveHello(link.fs, performance.now() + timeoutMs, () => new GroupClosedError('no hello')).then(
            (rank) => {
              if (rank !== null) link.peer = `kvRank ${rank}`;
            },
            () => undefined,
          );
        });
        server.unref();
        await group.broadcastObj(port, 0);
      } else {
        const port = await group.broadcastObj<number>(null, 0);
        const socket = await connectBy(
          host,
          port,
          performance.now() + timeoutMs,
          () => new ConnectTimeoutError(`${host}:${port}`, timeoutMs, 'KV pipe peer watch connection'),
        );
        sendHello(watch.track(socket, 'kvRank 0').fs, group.rank);
      }
      return watch;
    } catch (err) {
      watch.close();
      throw err;
    }
  }

  private track(socket: Socket, who: string): { fs: FrameSocket; peer: string } {
    const link: { fs: FrameSocket; peer: string } = {
      peer: who,
      fs: new FrameSocket(socket, (_orderly, cause): Error => {
        if (!this.closed) {
          this.close();
          this.onLost(`the connection to ${link.peer} ${cause ? `failed (${cause.message})` : 'closed'}`);
        }
        return new GroupClosedError(`the connection to ${link.peer} is closed`);
      }),
    };
    if (this.closed) {
      link.fs.close(new GroupClosedError('the peer watch is closed'));
      return link;
    }
    this.links.add(link.fs);
    socket.unref();
    socket.setKeepAlive(true, 1_000);
    return link;
  }

  /** Stops watching (idempotent); closing the sockets is no longer reported. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const reason = new GroupClosedError('the peer watch is closed');
    for (const fs of this.links) fs.close(reason);
    this.links.clear();
    this.server?.close();
  }
}
