/**
 * Typed, length-prefixed frames over a TCP socket: the MessageQueue's out-of-band path
 * (messages past the chunk size, readers on other nodes) and its ready handshake, direct
 * point-to-point messages, and the KV pipe's peer watch.
 * A frame is a uint32 little-endian byte count, a type byte, then the body. A `Bye`
 * frame announces an orderly close, so the other side can tell it from a crash.
 */
import type { Socket } from 'node:net';
import { GroupClosedError, InvalidArgumentError } from '../errors.ts';

const HEADER = 5;
const EMPTY = new Uint8Array(0);

/** Frame types. */
export const Frame = { Data: 0, Hello: 1, Ready: 2, Bye: 3 } as const;
export type Frame = (typeof Frame)[keyof typeof Frame];

/** A received frame. */
export interface Received {
  type: Frame;
  body: Buffer;
}

/** One end of a framed connection. Frames arrive in order; every wait has a deadline. */
export class FrameSocket {
  private readonly frames: Received[] = [];
  private waiter: { resolve: (f: Received) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failure: Error | null = null;
  private closedByUs = false;
  private peerSaidBye = false;
  private socketError: Error | undefined;
  /** Frames handed to the socket, and the last one whose write callback ran (they run in order). */
  private sentFrames = 0;
  private flushedFrames = 0;
  private readonly flushWaiters = new Set<(err?: Error) => void>();

  /**
   * `onLost` runs once when the peer goes away without {@link close} on this side;
   * `orderly` tells a peer that said goodbye from one that crashed or was killed, and
   * `cause` is the socket's error if it had one (ECONNRESET, ETIMEDOUT). Its error fails
   * every later wait.
   */
  constructor(
    readonly socket: Socket,
    private readonly onLost: (orderly: boolean, cause?: Error) => Error,
  ) {
    socket.setNoDelay(true);
    // Waits hold their deadline timers and writes their requests, which keep the process
    // alive while they last; an idle connection must not (a script that is done ends).
    socket.unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      // 'close' follows and reports the loss.
      this.socketError = err;
    });
    socket.on('close', () => {
      if (!this.closedByUs) this.fail(this.onLost(this.peerSaidBye, this.socketError));
    });
  }

  /**
   * Sends one frame (header and body in one buffer), written at once: when send returns
   * the frame is in the kernel unless the socket's queue was already backed up. Never
   * corked to the end of the tick: the caller may go on into a native call that blocks
   * this thread until a peer acts (a blocking NCCL communicator connecting on first use
   * waits for every peer), and a peer waiting for this frame would then never get it.
   */
  send(type: Frame, body: Uint8Array = EMPTY): boolean {
    if (this.failure) throw this.failure;
    const frame = Buffer.allocUnsafe(HEADER + body.length);
    frame.writeUInt32LE(body.length, 0);
    frame.writeUInt8(type, 4);
    frame.set(body, HEADER);
    const n = ++this.sentFrames;
    return this.socket.write(frame, (err) => this.onFlushed(n, err ?? undefined));
  }

  private onFlushed(n: number, err?: Error): void {
    this.flushedFrames = n;
    if (this.flushWaiters.size === 0) return;
    for (const waiter of [...this.flushWaiters]) waiter(err);
  }

  /** Bytes queued in the socket and not yet handed to the kernel. */
  get backlog(): number {
    return this.socket.writableLength;
  }

  /**
   * Resolves once every frame sent so far is in the kernel, or rejects at `deadline`
   * (performance.now()). Waits on the frames' own write callbacks: a socket emits
   * 'drain' only after a write that returned false, and a small frame queued behind a
   * full kernel buffer returns true.
   */
  drained(deadline: number, onTimeout: () => Error): Promise<void> {
    const target = this.sentFrames;
    if (this.socket.writableLength === 0 || this.flushedFrames >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.flushWaiters.delete(onFlushed);
        this.socket.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onFlushed = (err?: Error) => {
        if (err) done(this.failure ?? err);
        else if (this.flushedFrames >= target) done();
      };
      const onClose = () =>
        done(this.failure ?? new GroupClosedError('the connection closed before its frames were sent'));
      const timer = setTimeout(() => done(onTimeout()), Math.max(0, deadline - performance.now()));
      this.flushWaiters.add(onFlushed);
      this.socket.on('close', onClose);
    });
  }

  /** The next frame; rejects with `onTimeout()` at `deadline` or with the failure. */
  next(deadline: number, onTimeout: () => Error): Promise<Received> {
    const ready = this.frames.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter)
      return Promise.reject(new InvalidArgumentError('next', 'one reader at a time: an earlier next() still waits'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiter = null;
          reject(onTimeout());
        },
        Math.max(0, deadline - performance.now()),
      );
      this.waiter = { resolve, reject, timer };
    });
  }

  /** Fails the pending and later waits with `err` (first error wins). */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = null;
    if (w) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Says goodbye and ends the connection from this side. Idempotent. */
  close(reason: Error): void {
    if (this.closedByUs) return;
    this.closedByUs = true;
    if (!this.failure && this.socket.writable) this.socket.write(Buffer.from([0, 0, 0, 0, Frame.Bye]));
    this.fail(reason);
    this.socket.end();
    this.socket.destroySoon();
  }

  private onData(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.pendingBytes < HEADER) return;
      if (this.pending[0].length < HEADER) this.pending = [Buffer.concat(this.pending)];
      const size = this.pending[0].readUInt32LE(0);
      if (this.pendingBytes < HEADER + size) return;
      const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
      // A copy: the frame outlives the chunk it came in, which Node may reuse.
      const frame: Received = {
        type: all.readUInt8(4) as Frame,
        body: Buffer.from(all.subarray(HEADER, HEADER + size)),
      };
      const rest = all.subarray(HEADER + size);
      this.pending = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
      if (frame.type === Frame.Bye) this.peerSaidBye = true;
      else this.deliver(frame);
    }
  }

  private deliver(frame: Received): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      clearTimeout(w.timer);
      w.resolve(frame);
    } else {
      this.frames.push(frame);
    }
  }
}
