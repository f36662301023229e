import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  ConnectTimeoutError,
  InvalidArgumentError,
  StoreError,
  StoreTimeoutError,
  TimeoutError,
} from '../../src/errors.ts';
import { PrefixStore, TcpStoreClient, TcpStoreServer } from '../../src/store/index.ts';
import { FieldCursor, FrameReader, Op, Status, encodeFrame, isStatus } from '../../src/store/protocol.ts';
import { connectClients, freePort, onCleanup, startServer, text, until } from './helpers.ts';

async function serverAndClient(timeoutMs = 5_000) {
  const server = await startServer();
  const [client] = await connectClients(server, 1, timeoutMs);
  return { server, client };
}

/** A raw socket that collects the replies the server sends it. */
async function rawSocket(
  port: number,
): Promise<{ socket: Socket; replies: { code: number; id: number; text: string }[] }> {
  const replies: { code: number; id: number; text: string }[] = [];
  const cursor = new FieldCursor();
  const reader = new FrameReader(1 << 20, isStatus, {
    frame: (code, id, buf, start, end) => {
      cursor.reset(buf, start, end);
      replies.push({ code, id, text: cursor.next() ? buf.toString('utf8', cursor.start, cursor.end) : '' });
    },
    oversize: () => undefined,
    fatal: () => undefined,
  });
  const socket = await new Promise<Socket>((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
  });
  socket.on('data', (chunk) => reader.push(chunk));
  socket.on('error', () => undefined);
  onCleanup(() => socket.destroy());
  return { socket, replies };
}

describe('TCP store: operations', () => {
  it('binds loopback on an ephemeral port and serves every op', async () => {
    const { server, client } = await serverAndClient();
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    await client.set('a', 'alpha');
    await client.set('bin', new Uint8Array([0, 255, 7]));
    await client.set('empty', '');
    expect(text(await client.get('a'))).toBe('alpha');
    expect(Array.from(await client.get('bin'))).toEqual([0, 255, 7]);
    expect((await client.get('empty')).length).toBe(0);
    await client.set('a', 'again');
    expect(text(await client.get('a'))).toBe('again');

    expect(await client.add('n', 5)).toBe(5);
    expect(await client.add('n', -7)).toBe(-2);
    expect(text(await client.get('n'))).toBe('-2'); // decimal ASCII, like torch
    await expect(client.add('a', 1)).rejects.toThrow(/does not hold an integer/);
    await expect(client.add('n', 1.5)).rejects.toMatchObject({ argument: 'delta' });

    expect(text(await client.compareSet('c', '', 'first'))).toBe('first');
    expect(text(await client.compareSet('c', 'wrong', 'second'))).toBe('first');
    expect(text(await client.compareSet('c', 'first', 'second'))).toBe('second');
    expect(text(await client.compareSet('missing', 'x', 'y'))).toBe('x'); // torch returns `expected`
    expect(await client.check(['missing'])).toBe(false);

    expect(await client.check(['a', 'bin'])).toBe(true);
    expect(await client.check(['a', 'missing'])).toBe(false);
    expect(await client.check([])).toBe(true);
    await client.wait(['a', 'bin']);
    expect(await client.numKeys()).toBe(5);
    expect(await client.delete('a')).toBe(true);
    expect(await client.delete('a')).toBe(false);
    expect(await client.numKeys()).toBe(4);
    expect(server.size).toBe(4);
  });

  it('prefixed views nest and share the store', async () => {
    const { client } = await serverAndClient();
    const p = client.withPrefix('g').withPrefix('h');
    await p.set('k', 'v');
    expect(text(await client.get('g/h/k'))).toBe('v');
    const q = new PrefixStore(client, 'q');
    expect(q.prefix).toBe('q');
    expect(await q.add('n', 2)).toBe(2);
    expect(await q.check(['n'])).toBe(true);
    expect(text(await q.compareSet('n', '2', '3'))).toBe('3');
    await q.wait(['n']);
    expect(await q.numKeys()).toBe(2);
    expect(await q.delete('n')).toBe(true);
    expect(await client.check(['q/n'])).toBe(false);
  });

  it('a get waits, parked on the server, until another client sets the key', async () => {
    const { server, client } = await serverAndClient();
    const [other] = await connectClients(server, 1);
    const waiting = client.get('later');
    const waitingAll = client.wait(['later', 'also']);
    await until(() => server.parkedWaits === 2);
    await other.set('later', 'now');
    expect(text(await waiting)).toBe('now');
    expect(server.parkedWaits).toBe(1);
    await other.set('also', 'x');
    await waitingAll;
    expect(server.parkedWaits).toBe(0);
  });

  it('setForReaders values are deleted after their last reader, parked readers included', async () => {
    const { server, client } = await serverAndClient();
    const readers = await connectClients(server, 3);
    const early = readers.slice(0, 2).map((r) => r.get('msg'));
    await until(() => server.parkedWaits === 2);
    await client.setForReaders('msg', 'hello', 3);
    expect((await Promise.all(early)).map(text)).toEqual(['hello', 'hello']);
    expect(await client.check(['msg'])).toBe(true);
    expect(text(await readers[2].get('msg'))).toBe('hello');
    expect(await client.check(['msg'])).toBe(false);
    // One reader: the second of two parked gets stays parked for the next value.
    const both = [readers[0].get('one', 2_000), readers[1].get('one', 2_000)];
    await until(() => server.parkedWaits === 2);
    await client.setForReaders('one', 'first', 1);
    await until(() => server.parkedWaits === 1);
    await client.setForReaders('one', 'second', 1);
    expect((await Promise.all(both)).map(text).sort()).toEqual(['first', 'second']);
    expect(server.size).toBe(0);
    await expect(client.setForReaders('x', 'y', 0)).rejects.toMatchObject({ argument: 'readers' });
  });

  it('a get past its deadline fails with StoreTimeoutError naming the key; the server forgets it', async () => {
    const { server, client } = await serverAndClient();
    const t0 = performance.now();
    const err = await client.get('never', 200).catch((e: unknown) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect(err).toMatchObject({ key: 'never', timeoutMs: 200 });
    expect((err as Error).message).toContain("'never'");
    expect(took).toBeGreaterThanOrEqual(195);
    expect(took).toBeLessThan(1_000);
    await until(() => server.parkedWaits === 0);
    const waitErr = await client.wait(['w1', 'w2'], 100).catch((e: unknown) => e);
    expect(waitErr).toBeInstanceOf(StoreTimeoutError);
    expect((waitErr as StoreTimeoutError).key).toBe('w1, w2');
    await until(() => server.parkedWaits === 0);
    // The connection is still healthy, and a late set does not reach the dead request.
    await client.set('never', 'x');
    expect(text(await client.get('never'))).toBe('x');
    expect(client.pendingCalls).toBe(0);
  });

  it('rejects bad arguments with InvalidArgumentError naming them', async () => {
    const { client } = await serverAndClient();
    await expect(client.get('k', -1)).rejects.toMatchObject({ argument: 'timeoutMs' });
    await expect(client.get('k', Number.POSITIVE_INFINITY)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(client.set('k', 42 as unknown as string)).rejects.toMatchObject({ argument: 'value' });
    await expect(client.get(7 as unknown as string)).rejects.toMatchObject({ argument: 'key' });
    await expect(TcpStoreClient.connect({ host: '127.0.0.1', port: 0 })).rejects.toMatchObject({ argument: 'port' });
    await expect(TcpStoreServer.listen({ port: -1 })).rejects.toMatchObject({ argument: 'port' });
    await expect(TcpStoreServer.listen({ maxValueBytes: 2 ** 33 })).rejects.toMatchObject({
      argument: 'maxValueBytes',
    });
  });
});

describe('TCP store: concurrency and size', () => {
  it('16 concurrent clients keep an exact counter and their own keys', async () => {
    const { server, client } = await serverAndClient();
    const clients = await connectClients(server, 16);
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < 50; j++) {
          const [n] = await Promise.all([c.add('counter', 1), c.set(`k/${i}/${j}`, `${i}:${j}`)]);
          expect(n).toBeGreaterThanOrEqual(1);
          expect(text(await c.get(`k/${i}/${j}`))).toBe(`${i}:${j}`);
        }
      }),
    );
    expect(text(await client.get('counter'))).toBe('800');
    expect(await client.numKeys()).toBe(801);
  });

  it('thousands of requests in flight on one connection are matched to their replies', async () => {
    const { client } = await serverAndClient();
    const n = 3_000;
    const gets = Array.from({ length: n }, (_, i) => client.get(`p/${i}`));
    await Promise.all(Array.from({ length: n }, (_, i) => client.set(`p/${i}`, `v${i}`)));
    const values = (await Promise.all(gets)).map(text);
    expect(values.every((v, i) => v === `v${i}`)).toBe(true);
    const sums = await Promise.all(Array.from({ length: n }, () => client.add('sum', 2)));
    expect(new Set(sums).size).toBe(n);
    expect(Math.max(...sums)).toBe(2 * n);
  });

  it('moves a 24 MiB value intact, and rejects a value over the limit without dropping the connection', async () => {
    const server = await startServer({ maxValueBytes: 32 << 20 });
    const [a, b] = await connectClients(server, 2);
    const big = new Uint8Array(24 << 20);
    for (let i = 0; i < big.length; i += 4093) big[i] = (i >> 12) & 0xff;
    big[big.length - 1] = 0x5a;
    const got = b.get('big');
    await a.set('big', big);
    expect(Buffer.compare(await got, big)).toBe(0);

    const small = await startServer({ maxValueBytes: 1024 });
    const [c] = await connectClients(small, 1);
    await c.set('ok', 'kept');
    const err = await c.set('huge', new Uint8Array(2 << 20)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toMatch(/set of 'huge' failed: set frame of \d+ bytes exceeds/);
    expect(text(await c.get('ok'))).toBe('kept');
    expect(await c.check(['huge'])).toBe(false);
    // Within the frame allowance but over maxValueBytes: refused by the value check.
    await expect(c.set('mid', new Uint8Array(4096))).rejects.toThrow(
      /value of 4096 bytes exceeds the server's limit of 1024 bytes/,
    );
    await c.set('edge', new Uint8Array(1024));
    expect((await c.get('edge')).length).toBe(1024);
  });
});

describe('TCP store: bad clients and shutdown', () => {
  it('survives 1,000 malformed frames and still serves a good client with intact data', async () => {
    const { server, client } = await serverAndClient();
    await client.set('keep', 'intact');
    const parked = client.get('later');
    const garbage = [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), // not frames at all
      Buffer.from([0xff, 0xff, 0xff, 0xff, Op.set, 1, 0, 0, 0, 1, 2, 3]), // length far over the limit, then gone
      Buffer.from([2, 0, 0, 0, 1, 0, 0, 0, 0]), // length below the header
      encodeFrame(Op.set, 5, ['keep', 'clobbered'])!.subarray(0, 17), // truncated mid-frame, then gone
      Buffer.from([9, 0, 0, 0, 99, 1, 0, 0, 0]), // unknown op
      Buffer.from([9, 0, 0, 0, Op.set, 1, 0, 0, 0, 200, 0, 0, 0]), // field overruns its frame
      encodeFrame(Op.get, 6, ['nobody-sets-this'])!, // parked, then the client vanishes
      Buffer.from([]), // connect and vanish
    ];
    await Promise.all(
      Array.from(
        { length: 1000 },
        (_, i) =>
          new Promise<void>((resolve) => {
            const s = connect({ host: '127.0.0.1', port: server.port }, () => {
              s.write(garbage[i % garbage.length]);
              // Half vanish at once, half linger to be answered or dropped.
              if (i % 2 === 0) s.destroy();
              else setTimeout(() => s.destroy(), 5);
            });
            s.on('error', () => undefined);
            s.on('close', () => resolve());
          }),
      ),
    );
    await until(() => server.connectionCount === 1 && server.parkedWaits === 1, 5_000);
    expect(text(await client.get('keep'))).toBe('intact');
    await client.set('later', 'ok');
    expect(text(await parked)).toBe('ok');
    expect(server.size).toBe(2);
    expect(await client.numKeys()).toBe(2);
  }, 30_000);

  it('answers a malformed field with an error frame and keeps the connection; drops one that sends non-frames', async () => {
    const server = await startServer();
    const { socket, replies } = await rawSocket(server.port);
    socket.write(
      Buffer.concat([
        Buffer.from([9, 0, 0, 0, Op.get, 42, 0, 0, 0, 200, 0, 0, 0]),
        encodeFrame(Op.set, 43, ['k'])!, // value field missing
        encodeFrame(Op.set, 44, ['k', 'v'])!,
      ]),
    );
    await until(() => replies.length === 3);
    expect(replies[0]).toMatchObject({ code: Status.error, id: 42 });
    expect(replies[0].text).toMatch(/malformed get frame: field of 200 bytes overruns/);
    expect(replies[1]).toMatchObject({
      code: Status.error,
      id: 43,
      text: "malformed set frame: missing field 'value'",
    });
    expect(replies[2]).toMatchObject({ code: Status.ok, id: 44 });
    const closed = new Promise((r) => socket.once('close', r));
    socket.write(Buffer.from([9, 0, 0, 0, 99, 1, 0, 0, 0]));
    await closed;
    expect(replies[3]).toMatchObject({ code: Status.error, id: 0, text: 'protocol error: unknown code 99' });
    expect(server.size).toBe(1);
  });

  it('a closed client rejects pending and later calls with StoreError; close is idempotent', async () => {
    const { server, client } = await serverAndClient();
    const pending = client.get('never');
    await until(() => server.parkedWaits === 1);
    const closing = client.close();
    await expect(pending).rejects.toThrow(StoreError);
    await expect(pending).rejects.toThrow(/was closed/);
    await expect(client.set('x', 'y')).rejects.toThrow(StoreError);
    await closing;
    await client.close();
    await until(() => server.parkedWaits === 0 && server.connectionCount === 0);
  });

  it('closing the server fails its clients pending calls and frees the port; close is idempotent', async () => {
    const server = await TcpStoreServer.listen();
    const client = await TcpStoreClient.connect({ host: '127.0.0.1', port: server.port });
    onCleanup(() => client.close());
    const pending = client.get('never');
    await until(() => server.parkedWaits === 1);
    await Promise.all([server.close(), server.close()]);
    await expect(pending).rejects.toThrow(StoreError);
    const again = await TcpStoreServer.listen({ port: server.port });
    onCleanup(() => again.close());
    expect(again.port).toBe(server.port);
    await expect(TcpStoreServer.listen({ port: server.port })).rejects.toThrow(/could not listen .*EADDRINUSE/);
  });

  it('connect retries until the server comes up, and gives up with ConnectTimeoutError at its deadline', async () => {
    const port = await freePort();
    const late = new Promise<TcpStoreServer>((resolve) =>
      setTimeout(() => resolve(TcpStoreServer.listen({ port })), 300),
    );
    onCleanup(async () => (await late).close());
    const client = await TcpStoreClient.connect({ host: '127.0.0.1', port, timeoutMs: 5_000 });
    onCleanup(() => client.close());
    await client.set('up', '1');
    expect((await late).size).toBe(1);

    const nobody = await freePort();
    const t0 = performance.now();
    const err = await TcpStoreClient.connect({ host: '127.0.0.1', port: nobody, timeoutMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectTimeoutError);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as ConnectTimeoutError).code).toBe('GPUGROUP_CONNECT_TIMEOUT');
    expect((err as ConnectTimeoutError).address).toBe(`127.0.0.1:${nobody}`);
    expect((err as Error).message).toMatch(
      new RegExp(`^store connection \\(127.0.0.1:${nobody}\\) not established within 300 ms: connect ECONNREFUSED`),
    );
    expect(performance.now() - t0).toBeLessThan(1_500);
  });
});
