import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreTimeoutError } from '../../src/errors.ts';
import { TcpStoreClient, TcpStoreServer } from '../../src/store/index.ts';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function serverAndClient(timeoutMs = 5_000) {
  const server = await TcpStoreServer.listen();
  const client = await TcpStoreClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs });
  cleanup.push(() => server.close(), () => client.close());
  return { server, client };
}

describe('TCP store', () => {
  it('binds loopback on an ephemeral port and serves every op', async () => {
    const { server, client } = await serverAndClient();
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    await client.set('a', 'alpha');
    await client.set('bin', new Uint8Array([0, 255, 7]));
    expect(text(await client.get('a'))).toBe('alpha');
    expect(Array.from(await client.get('bin'))).toEqual([0, 255, 7]);
    expect(await client.add('n', 5)).toBe(5);
    expect(await client.add('n', -2)).toBe(3);
    expect(text(await client.compareSet('c', '', 'first'))).toBe('first');
    expect(text(await client.compareSet('c', 'wrong', 'second'))).toBe('first');
    expect(text(await client.compareSet('c', 'first', 'second'))).toBe('second');
    expect(await client.check(['a', 'bin'])).toBe(true);
    expect(await client.check(['a', 'missing'])).toBe(false);
    expect(await client.numKeys()).toBe(4);
    expect(await client.delete('a')).toBe(true);
    expect(await client.delete('a')).toBe(false);
    expect(await client.numKeys()).toBe(3);
    const p = client.withPrefix('g').withPrefix('h');
    await p.set('k', 'v');
    expect(text(await client.get('g/h/k'))).toBe('v');
  });

  it('a get waits until another client sets the key', async () => {
    const { server, client } = await serverAndClient();
    const other = await TcpStoreClient.connect({ host: '127.0.0.1', port: server.port });
    cleanup.push(() => other.close());
    const waiting = client.get('later');
    await new Promise((r) => setTimeout(r, 50));
    await other.set('later', 'now');
    expect(text(await waiting)).toBe('now');
    await client.wait(['later']);
  });

  it('a get past its deadline fails with StoreTimeoutError naming the key, and the server forgets it', async () => {
    const { client } = await serverAndClient();
    const t0 = performance.now();
    const err = await client.get('never', 200).catch((e) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect(err.key).toBe('never');
    expect(err.message).toContain("'never'");
    expect(took).toBeGreaterThanOrEqual(195);
    expect(took).toBeLessThan(1_000);
    // The connection is still healthy.
    await client.set('never', 'x');
    expect(text(await client.get('never'))).toBe('x');
  });

  it('16 concurrent clients keep an exact counter and their own keys', async () => {
    const { server, client } = await serverAndClient();
    const clients = await Promise.all(Array.from({ length: 16 }, () => TcpStoreClient.connect({ host: '127.0.0.1', port: server.port })));
    cleanup.push(() => clients.forEach((c) => c.close()));
    await Promise.all(clients.map(async (c, i) => {
      for (let j = 0; j < 50; j++) {
        await Promise.all([c.add('counter', 1), c.set(`k/${i}/${j}`, `${i}:${j}`)]);
        expect(text(await c.get(`k/${i}/${j}`))).toBe(`${i}:${j}`);
      }
    }));
    expect(Number(text(await client.get('counter')))).toBe(800);
    expect(await client.numKeys()).toBe(801);
  });

  it('survives 1,000 malformed frames and still serves a good client with intact data', async () => {
    const { server, client } = await serverAndClient();
    await client.set('keep', 'intact');
    const garbage = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), // length far over the limit
      Buffer.from([2, 0, 0, 0, 1]), // length below the header
      Buffer.from([20, 0, 0, 0, 2, 1, 0, 0, 0, 200, 0, 0, 0]), // field overruns (truncated)
      Buffer.from([9, 0, 0, 0, 99, 1, 0, 0, 0, 0, 0, 0, 0]), // unknown op
    ];
    let done = 0;
    await Promise.all(Array.from({ length: 1000 }, (_, i) => new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: server.port }, () => {
        s.write(garbage[i % garbage.length]);
        // Half vanish mid-frame, half wait to be answered or dropped.
        if (i % 2 === 0) s.destroy();
        else setTimeout(() => s.destroy(), 5);
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        done++;
        resolve();
      });
    })));
    expect(done).toBe(1000);
    expect(text(await client.get('keep'))).toBe('intact');
    await client.set('after', 'ok');
    expect(text(await client.get('after'))).toBe('ok');
    expect(server.size).toBe(2);
  }, 30_000);

  it('a closed client rejects pending and later calls', async () => {
    const { client } = await serverAndClient();
    const pending = client.get('never');
    client.close();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(client.set('x', 'y')).rejects.toThrow(/closed/);
  });
});
