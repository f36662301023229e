/**
 * The one connect-with-a-deadline, as c10d keeps one `Socket::connect` with
 * `SocketOptions::connect_timeout()` and NCCL one `ncclSocketConnect`: used by the store
 * client, the message queue's readers, direct point-to-point and the KV pipe's peer watch.
 */
import { connect, type Socket } from 'node:net';

/**
 * Opens a TCP connection to `host:port`. Resolves with the connected socket (Nagle
 * off: every user sends small frames it wants on the wire now); rejects with
 * `onTimeout()` at `deadline` (a performance.now() time) or with the socket's own error
 * (ECONNREFUSED, EHOSTUNREACH, …). A socket that fails is destroyed.
 */
export function connectBy(host: string, port: number, deadline: number, onTimeout: () => Error): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => {
        socket.off('error', onError);
        socket.on('error', () => undefined); // destroy() may still report the attempt
        socket.destroy();
        reject(onTimeout());
      },
      Math.max(0, deadline - performance.now()),
    );
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
