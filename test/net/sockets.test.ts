import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConnectTimeoutError, GroupClosedError } from '../../src/errors.ts';
import { connectBy, Frame, FrameSocket, freePort, listenOn, receiveHello, sendHello } from '../../src/net/index.ts';

const lost = () => new GroupClosedError('lost');

describe('sockets (src/net)', () => {
  it('listenOn binds an ephemeral port that connectBy reaches; the hello names the rank', async () => {
    const { server, port } = await listenOn('127.0.0.1');
    try {
      expect(port).toBeGreaterThan(0);
      const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
      const socket = await connectBy('127.0.0.1', port, performance.now() + 5_000, () => new Error('late'));
      const client = new FrameSocket(socket, lost);
      const other = new FrameSocket(await accepted, lost);
      sendHello(client, 70_000);
      expect(await receiveHello(other, performance.now() + 5_000, () => new Error('late'))).toBe(70_000);
      client.send(Frame.Data, Buffer.from('x'));
      expect(await receiveHello(other, performance.now() + 5_000, () => new Error('late'))).toBeNull();
      client.close(new GroupClosedError('done'));
      other.close(new GroupClosedError('done'));
    } finally {
      server.close();
    }
  });

  it('listenOn rejects a port in use with the bind error', async () => {
    const { server, port } = await listenOn('127.0.0.1');
    try {
      await expect(listenOn('127.0.0.1', { port })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      server.close();
    }
  });

  it('connectBy rejects with the refusal, or with onTimeout() at the deadline', async () => {
    const nobody = await freePort();
    await expect(connectBy('127.0.0.1', nobody, performance.now() + 5_000, () => new Error('late'))).rejects.toThrow(
      /ECONNREFUSED/,
    );
    // The deadline: one already past fails at the first timer turn, whatever the network does.
    const err = await connectBy(
      '127.0.0.1',
      nobody,
      performance.now() - 1,
      () => new ConnectTimeoutError('x:1', 0),
    ).catch((e: unknown) => e);
    expect(err instanceof ConnectTimeoutError || (err as NodeJS.ErrnoException).code === 'ECONNREFUSED').toBe(true);
  });
});
