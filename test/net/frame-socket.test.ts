import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Frame, FrameSocket } from '../../src/net/frame-socket.ts';

/** A socket whose kernel buffer is full: writes queue, and flush only when told to. */
class BackedUpSocket extends EventEmitter {
  writableLength = 0;
  writable = true;
  private readonly queued: { bytes: number; cb: (err?: Error | null) => void }[] = [];
  setNoDelay(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  write(chunk: Buffer, cb: (err?: Error | null) => void): boolean {
    this.queued.push({ bytes: chunk.length, cb });
    this.writableLength += chunk.length;
    return this.writableLength < 16 << 10; // a net.Socket's highWaterMark: small frames return true
  }
  /** The kernel took everything: write callbacks run, and no 'drain' (no write returned false). */
  flush(): void {
    for (const { bytes, cb } of this.queued.splice(0)) {
      this.writableLength -= bytes;
      cb(null);
    }
  }
  destroy(): void {
    this.emit('close');
  }
  end(): void {}
}

describe('FrameSocket.drained', () => {
  it('resolves once the frames are flushed, also when no write returned false (no drain event)', async () => {
    const raw = new BackedUpSocket();
    const fs = new FrameSocket(raw as unknown as Socket, () => new Error('lost'));
    expect(fs.send(Frame.Data, new Uint8Array(100))).toBe(true);
    expect(fs.backlog).toBe(105);
    const t0 = performance.now();
    const drained = fs.drained(performance.now() + 5_000, () => new Error('timed out'));
    setTimeout(() => raw.flush(), 50);
    await drained;
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('is immediate when nothing is queued, and rejects at its deadline when nothing flushes', async () => {
    const raw = new BackedUpSocket();
    const fs = new FrameSocket(raw as unknown as Socket, () => new Error('lost'));
    await fs.drained(performance.now() + 1_000, () => new Error('timed out'));
    fs.send(Frame.Data, new Uint8Array(10));
    await expect(fs.drained(performance.now() + 100, () => new Error('timed out'))).rejects.toThrow('timed out');
  });
});
