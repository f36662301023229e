// Worker module for the CPU communicator's launchGroup tests: the transport the group's
// communicator picked, and chunked transfers through a dedicated small-buffer communicator.
import { CpuCommunicator } from '../../src/comm/index.ts';
import type { RankContext } from '../../src/orchestrator/index.ts';
import { Tensor } from '../../src/tensor/index.ts';

export function transport(ctx: RankContext): string {
  return (ctx.communicator as CpuCommunicator).transport;
}

const f = (i: number, r: number): number => ((i * 7 + r * 13) % 101) - 50;

/** A 3001-element all-reduce, all-gather and ring through 1 KiB halves and 256 B p2p slots. */
export async function chunked(ctx: RankContext) {
  const comm = await CpuCommunicator.create({
    group: ctx.processGroup,
    groupName: 'chunked',
    bufferBytes: 1024,
    p2pBytes: 256,
    smallAllReduceBytes: 512,
    timeoutMs: 20_000,
  });
  try {
    const n = 3001;
    const x = Tensor.fromArray(
      Array.from({ length: n }, (_, i) => f(i, ctx.rank)),
      { dtype: 'float32' },
    );
    const sum = Array.from((await (await comm.allReduce(x)).toArray()) as Float32Array);
    const gathered = Array.from((await (await comm.allGather(x, 0)).toArray()) as Float32Array);
    const sent = comm.send(x);
    const got = comm.recv([n], 'float32');
    await sent;
    const ring = Array.from((await (await got).toArray()) as Float32Array);
    return { sum, gathered, ring };
  } finally {
    await comm.destroy();
  }
}
