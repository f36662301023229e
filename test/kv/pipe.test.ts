// NcclPipe on the CPU backend across two real rank processes and threads: vLLM's round
// trip and stress tests, back-pressure, a dead peer, and argument checks.
import { describe, expect, it } from 'vitest';
import { BrokenPipeError, InvalidArgumentError } from '../../src/errors.ts';
import { NcclPipe } from '../../src/kv/index.ts';
import { linkComm } from '../../src/kv/nccl-pipe.ts';
import { TcpStoreClient, freePort } from '../../src/store/index.ts';
import { Tensor } from '../../src/tensor/index.ts';
import { launch } from '../helpers.ts';

const worker = new URL('./pipe-worker.ts', import.meta.url);

describe.each(['process', 'thread'] as const)('NcclPipe on CPU ranks (%s mode)', (mode) => {
  it('round trip: [1] and [[2,3,4,8]] there and back, in order', async () => {
    const group = await launch({ mode, worldSize: 2, worker });
    expect(await group.callAll('open', await freePort())).toEqual(['cpu', 'cpu']);
    const [back, there] = await group.callAll<unknown[]>('roundTrip');
    const expected = [
      { shape: [1], values: [1] },
      { shape: [1, 4], values: [2, 3, 4, 8] },
    ];
    expect(there).toEqual(expected);
    expect(back).toEqual(expected);
    await group.callAll('close');
  });

  it('500 iterations alternating the sender, 5% null triples, each tensor checked against its sent mean and std', async () => {
    const group = await launch({ mode, worldSize: 2, worker });
    await group.callAll('open', await freePort());
    const [a, b] = await group.callAll<{ checked: number; nulls: number }>('stress', 500);
    expect(a.checked + b.checked + a.nulls + b.nulls).toBe(500);
    expect(a.nulls + b.nulls).toBeGreaterThan(5);
    expect(a.checked + a.nulls).toBe(250);
    await group.callAll('close');
  }, 30_000);

  it('back-pressure: 4 MiB of sends through a 1 MiB buffer wait for the receiver and never exceed the buffer', async () => {
    const group = await launch({ mode, worldSize: 2, worker });
    await group.callAll('open', await freePort(), 1 << 20);
    const [sender, receiver] = await group.callAll<{ most: number; returned: number[]; got: number[] }>(
      'backPressure',
      400,
    );
    expect(sender.most).toBeLessThanOrEqual(1 << 20);
    expect(sender.returned[3]).toBeLessThan(300); // four 256 KiB sends fit at once
    expect(sender.returned[15]).toBeGreaterThan(350); // the rest waited for the receiver
    expect(receiver.got).toEqual(Array.from({ length: 16 }, (_, i) => i));
    await group.callAll('close');
  });

  it('a receiver that dies mid-transfer breaks the pipe at the sender with BrokenPipeError within 5 s', async () => {
    const group = await launch({ mode, worldSize: 2, worker });
    await group.callAll('open', await freePort(), 64 << 10);
    const t0 = performance.now();
    await expect(group.callAll('killReceiver')).rejects.toMatchObject({ name: 'RankFailedError', rank: 1 });
    const store = await TcpStoreClient.connect({ ...group.storeAddress, timeoutMs: 5_000 });
    try {
      expect(Buffer.from(await store.get('kv/sender')).toString()).toMatch(
        /^BrokenPipeError: .*(rank 1 failed|kvRank 1 closed)/,
      );
      expect(performance.now() - t0).toBeLessThan(5_000);
    } finally {
      store.close();
    }
  });
});

describe('NcclPipe in one thread', () => {
  const pair = async (bufferSizeBytes?: number) => {
    const port = await freePort();
    const opts = (kvRank: number) => ({
      localRank: 0,
      kvRank,
      kvParallelSize: 2,
      kvIp: '127.0.0.1',
      kvPort: port,
      device: 'cpu',
      bufferSizeBytes,
      storeTimeoutMs: 5_000,
    });
    return Promise.all([NcclPipe.create(opts(0)), NcclPipe.create(opts(1))]);
  };

  it('carries every dtype, 0-d and empty tensors, and null, in order; the constructor form connects by itself', async () => {
    const port = await freePort();
    const opts = (kvRank: number) => ({
      localRank: 0,
      kvRank,
      kvParallelSize: 2,
      kvIp: '127.0.0.1',
      kvPort: port,
      device: 'cpu',
      storeTimeoutMs: 5_000,
    });
    const [a, b] = [new NcclPipe(opts(0)), new NcclPipe(opts(1))];
    const items = [
      Tensor.fromArray([1.5, -2], { dtype: 'bfloat16' }),
      Tensor.fromArray([7n], { dtype: 'int64', shape: [] }),
      null,
      Tensor.empty([0, 3], { dtype: 'float16' }),
      Tensor.fromArray([1, 2, 3, 4, 5, 6], { shape: [2, 3], dtype: 'uint8' }).movedim(0, 1),
    ];
    for (const t of items) void a.sendTensor(t);
    for (const t of items) {
      const got = await b.recvTensor();
      if (t === null) {
        expect(got).toBeNull();
        continue;
      }
      expect(got!.dtype).toBe(t.dtype);
      expect(got!.shape).toEqual(t.shape);
      expect(Array.from((await got!.toArray()) as ArrayLike<unknown>)).toEqual(
        Array.from((await t.contiguous().toArray()) as ArrayLike<unknown>),
      );
    }
    await Promise.all([a.close(), b.close()]);
  });

  it("a receive waiting for its item does not hold back the same rank's sends (each side receives first)", async () => {
    const [a, b] = await pair();
    try {
      // Both ends wait to receive before they send: one chain for both directions would
      // keep each send behind its own rank's receive until the deadline.
      const fromB = a.recvTensor();
      const fromA = b.recvTensor();
      await a.sendTensor(Tensor.fromArray([1, 2, 3]));
      await b.sendTensor(Tensor.fromArray([4, 5]));
      expect(Array.from((await (await fromA)!.toArray()) as Float32Array)).toEqual([1, 2, 3]);
      expect(Array.from((await (await fromB)!.toArray()) as Float32Array)).toEqual([4, 5]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the next receive is posted once recvTensor takes an item, and only the next', async () => {
    const [a, b] = await pair();
    try {
      // Count the receives b's pipe issues on its communicator.
      const comm = (b as unknown as { recvComm: { recv: (...args: unknown[]) => Promise<Tensor> } }).recvComm;
      const recv = comm.recv.bind(comm);
      let issued = 0;
      comm.recv = (...args: unknown[]) => {
        issued++;
        return recv(...args);
      };
      for (const v of [1, 2, 3]) void a.sendTensor(Tensor.full([1024], v));
      expect(((await (await b.recvTensor())!.toArray()) as Float32Array)[0]).toBe(1);
      // Item 2's receive is issued without a recvTensor call; item 3's waits for item 2 to be taken.
      const deadline = performance.now() + 5_000;
      while (issued < 2 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));
      expect(issued).toBe(2);
      expect(((await (await b.recvTensor())!.toArray()) as Float32Array)[0]).toBe(2);
      expect(((await (await b.recvTensor())!.toArray()) as Float32Array)[0]).toBe(3);
      expect(issued).toBe(3);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('links alternate between two communicators (three for an odd ring): no rank sends and receives on one', () => {
    for (const size of [2, 3, 4, 5, 8]) {
      for (let r = 0; r < size; r++) {
        const send = linkComm(r, size);
        const recv = linkComm((r - 1 + size) % size, size);
        expect(send).not.toBe(recv);
        expect(Math.max(send, recv)).toBeLessThan(size % 2 === 0 ? 2 : 3);
      }
    }
  });

  it('after close every call rejects with BrokenPipeError; bad arguments are refused before anything starts', async () => {
    const [a, b] = await pair();
    await Promise.all([a.close(), b.close()]);
    await expect(a.sendTensor(null)).rejects.toBeInstanceOf(BrokenPipeError);
    await expect(a.recvTensor()).rejects.toBeInstanceOf(BrokenPipeError);
    expect(() => new NcclPipe({ localRank: 0, kvRank: 2, kvParallelSize: 2, kvIp: '127.0.0.1', kvPort: 1 })).toThrow(
      InvalidArgumentError,
    );
    expect(() => new NcclPipe({ localRank: 0, kvRank: 0, kvParallelSize: 1, kvIp: '127.0.0.1', kvPort: 1 })).toThrow(
      /kvParallelSize/,
    );
    expect(() => new NcclPipe({ localRank: 0, kvRank: 0, kvParallelSize: 2, kvIp: '', kvPort: 1 })).toThrow(/kvIp/);
    const [c, d] = await pair();
    await expect(c.sendTensor([1, 2] as unknown as Tensor)).rejects.toMatchObject({ argument: 't' });
    await Promise.all([c.close(), d.close()]);
  });
});
