import { describe, expect, it } from 'vitest';
import { CpuCommunicator, createCommunicator, type DeviceCommunicator, split } from '../../src/comm/index.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { Tensor } from '../../src/tensor/index.ts';
import { groupsOf, useStore, values } from './cpu-helpers.ts';

useStore();

describe('the communicator factory (src/comm/factory.ts)', () => {
  it('device cpu gives the CPU backend; grouped runs its function as is; openPointToPoint is a no-op', async () => {
    const gs = groupsOf(2);
    const comms = (await Promise.all(
      gs.map((group) => createCommunicator({ device: 'cpu', group, groupName: 'factory', timeoutMs: 10_000 })),
    )) as DeviceCommunicator[];
    try {
      for (const c of comms) expect(c).toBeInstanceOf(CpuCommunicator);
      await Promise.all(comms.map((c) => c.openPointToPoint(1 - c.rankInGroup, 1 - c.rankInGroup)));
      // Two broadcasts inside grouped, as broadcastTensorDict issues them.
      const out = await Promise.all(
        comms.map((c, r) =>
          c.grouped(async () => {
            const a = Tensor.fromArray([r === 0 ? 7 : 0, 1]);
            const b = Tensor.fromArray([r === 1 ? 9 : 0]);
            await c.broadcast(a, 0);
            await c.broadcast(b, 1);
            return [await values(a), await values(b)];
          }),
        ),
      );
      expect(out).toEqual([
        [[7, 1], [9]],
        [[7, 1], [9]],
      ]);
      // A CPU communicator cannot be split: that is NCCL's (ncclCommSplit).
      await expect(split(comms[0], { group: gs[0], groupName: 'x', color: 0, key: 0 })).rejects.toThrow(
        "parent: the communicator of group 'factory' cannot be split",
      );
    } finally {
      await Promise.all(comms.map((c) => c.destroy()));
    }
  });

  it('backend nccl on a cpu device is refused before any native call', async () => {
    const [group] = groupsOf(1);
    await expect(createCommunicator({ backend: 'nccl', device: 'cpu', group, groupName: 'n' })).rejects.toThrow(
      InvalidArgumentError,
    );
  });
});
