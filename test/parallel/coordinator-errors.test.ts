import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuGroupError, InvalidArgumentError } from '../../src/errors.ts';
import { freePort } from '../../src/net/index.ts';
import {
  destroyDistributedEnvironment,
  type GroupCoordinator,
  getWorldGroup,
  initDistributedEnvironment,
} from '../../src/parallel/index.ts';
import { Tensor } from '../../src/tensor/index.ts';

describe('GroupCoordinator: a bad argument rejects the returned Promise, never throws', () => {
  let g: GroupCoordinator;
  beforeAll(async () => {
    await initDistributedEnvironment({ worldSize: 1, rank: 0, backend: 'cpu', masterPort: await freePort() });
    g = getWorldGroup();
  });
  afterAll(() => destroyDistributedEnvironment());

  const t = Tensor.zeros([2, 3]);
  const calls: [string, () => Promise<unknown>, RegExp][] = [
    ['allGather', () => g.allGather(t, 5), /dim/],
    ['reduceScatter', () => g.reduceScatter(t, -3), /dim/],
    ['gather', () => g.gather(t, 3), /^dst/],
    ['broadcast', () => g.broadcast(t, -1), /^src/],
    ['broadcastObject', () => g.broadcastObject({}, 2), /^src/],
    ['sendObject', () => g.sendObject({}, 0), /^dst: Invalid destination rank/],
    ['recvObject', () => g.recvObject(0), /^src: Invalid source rank/],
    ['allGatherv', () => g.allGatherv(t, [2]), /No device communicator found/],
    ['reduceScatterv', () => g.reduceScatterv(t, [2]), /No device communicator found/],
    ['send', () => g.send(t), /No device communicator found/],
    ['recv', () => g.recv([2], 'float32'), /No device communicator found/],
    ['graphCapture', () => g.graphCapture(() => undefined), /^backend: graph capture needs CUDA/],
  ];
  it.each(calls)('%s', async (_name, call, message) => {
    let returned: Promise<unknown> | undefined;
    expect(() => {
      returned = call();
    }).not.toThrow();
    const err = await returned!.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GpuGroupError);
    expect((err as Error).message).toMatch(message);
    if ((err as Error).message.startsWith('No device')) expect(err).not.toBeInstanceOf(InvalidArgumentError);
  });
});
