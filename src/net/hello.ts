/**
 * The one hello: the first frame on a connection names the connecting rank, as a
 * uint32 little-endian in a `Hello` frame. The message queue's readers, direct
 * point-to-point and the KV pipe's peer watch all open their connections with it.
 */
import { Frame, type FrameSocket } from './frame-socket.ts';

const HELLO_BYTES = 4;

/** Names `rank` to the other end: the first frame a connecting side sends. */
export function sendHello(link: FrameSocket, rank: number): void {
  const body = Buffer.allocUnsafe(HELLO_BYTES);
  body.writeUInt32LE(rank, 0);
  link.send(Frame.Hello, body);
}

/**
 * The rank named by the connection's first frame, or null when that frame is not a
 * hello. Rejects like {@link FrameSocket.next} (`onTimeout()` at `deadline`, or the
 * connection's failure).
 */
export async function receiveHello(
  link: FrameSocket,
  deadline: number,
  onTimeout: () => Error,
): Promise<number | null> {
  const frame = await link.next(deadline, onTimeout);
  if (frame.type !== Frame.Hello || frame.body.length !== HELLO_BYTES) return null;
  return frame.body.readUInt32LE(0);
}
