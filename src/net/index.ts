/**
 * src/net/: sockets, below the store and the communicators: framed connections, listening
 * on an ephemeral port, connecting with a deadline, and the one rank hello.
 */
export { Frame, FrameSocket } from './frame-socket.ts';
export type { Received } from './frame-socket.ts';
export { connectBy } from './connect.ts';
export { freePort, listenOn } from './listen.ts';
export type { ListenOptions } from './listen.ts';
export { receiveHello, sendHello } from './hello.ts';
