// Closing is not failing: an NCCL communicator destroyed (or aborted by its signal) after
// its work completed leaves the caller's stream and tensors usable; only an abort that
// ends unfinished work marks the stream failed. Run against the stand-in CUDA/NCCL
// library (bench/stub-native), whose hooks say whether a stream still has work pending.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NcclResult } from '../../native/index.ts';
import { NcclCommunicator } from '../../src/comm/index.ts';
import { GroupClosedError, InvalidArgumentError, NcclError } from '../../src/errors.ts';
import { StatelessProcessGroup } from '../../src/store/index.ts';
import { Stream, Tensor, currentStream, setDevice, withStream } from '../../src/tensor/index.ts';
import { NcclWeightTransferEngine } from '../../src/weights/index.ts';
import { initInfo } from '../weights/helpers.ts';
import { stubHooks, useStubNative } from '../stub-native.ts';

const stub = useStubNative();

describe.skipIf(!stub)('closing an NCCL communicator (stand-in library)', () => {
  const hooks = stub ? stubHooks() : null;
  const open: { comm: NcclCommunicator; group: StatelessProcessGroup }[] = [];

  beforeAll(() => setDevice(0));
  afterEach(async () => {
    hooks!.setBusy(false);
    hooks!.setAsyncError(0);
    for (const { comm, group } of open.splice(0)) {
      comm.destroy();
      await group.close();
    }
  });

  /** A one-rank communicator whose collectives go through NCCL (singleRankOps), unless `options` say otherwise. */
  async function communicator(
    options: Partial<Parameters<typeof NcclCommunicator.create>[0]> = {},
  ): Promise<NcclCommunicator> {
    const group = await StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 1 });
    const comm = await NcclCommunicator.create({
      group,
      device: 'cuda:0',
      groupName: 'close-test',
      singleRankOps: true,
      ...options,
    });
    open.push({ comm, group });
    return comm;
  }

  it('destroy() after the work completed: the stream and its tensors stay readable, and a new communicator works', async () => {
    const x = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), { device: 'cuda:0' });
    const first = await communicator();
    const y = await first.allReduce(x);
    expect(Array.from((await y.toArray()) as Float32Array)).toEqual([1, 2, 3, 4]);
    first.destroy();
    expect(Array.from((await y.toArray()) as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(Array.from((await x.toArray()) as Float32Array)).toEqual([1, 2, 3, 4]);
    await currentStream().synchronize(1_000);
    const second = await communicator();
    const z = await second.allReduce(y);
    second.destroy();
    expect(Array.from((await z.toArray()) as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  it('an abort by its signal after the work completed (a peer gone, a pipe closing) leaves the stream usable', async () => {
    const controller = new AbortController();
    const comm = await communicator({ abortSignal: controller.signal });
    const y = await comm.allReduce(Tensor.full([3], 5, { dtype: 'float32', device: 'cuda:0' }));
    await currentStream().synchronize(1_000);
    controller.abort(new Error('the peer is gone'));
    await expect(comm.allReduce(y)).rejects.toBeInstanceOf(GroupClosedError);
    expect(Array.from((await y.toArray()) as Float32Array)).toEqual([5, 5, 5]);
  });

  it('destroy() with work in flight fails that stream only, saying so', async () => {
    const comm = await communicator();
    const stream = new Stream();
    const kept = Tensor.full([2], 7, { dtype: 'float32', device: 'cuda:0' });
    await withStream(stream, () => comm.allReduce(Tensor.full([2], 1, { dtype: 'float32', device: 'cuda:0' })));
    hooks!.setBusy(true); // the all-reduce has not finished
    comm.destroy();
    hooks!.setBusy(false);
    const err = (await stream.synchronize(1_000).catch((e) => e)) as GroupClosedError;
    expect(err).toBeInstanceOf(GroupClosedError);
    expect(err.message).toBe(
      "NCCL communicator of group 'close-test' was destroyed with work in flight: what it enqueued on this stream never completed",
    );
    // The caller's current stream had no work of the communicator: untouched.
    expect(Array.from((await kept.toArray()) as Float32Array)).toEqual([7, 7]);
    stream.dispose();
  });

  it('close() waits for the work still running, then destroys: its output reads back on its stream', async () => {
    const comm = await communicator();
    const stream = new Stream();
    hooks!.setBusy(true); // the all-reduce has not finished
    const y = await withStream(stream, () =>
      comm.allReduce(Tensor.fromArray(new Float32Array([1, 2, 3]), { device: 'cuda:0' })),
    );
    let closed = false;
    const closing = comm.close(5_000).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closed).toBe(false);
    hooks!.setBusy(false);
    await closing;
    await expect(comm.allReduce(y)).rejects.toBeInstanceOf(GroupClosedError);
    expect(Array.from((await withStream(stream, () => y.toArray())) as Float32Array)).toEqual([1, 2, 3]);
    await stream.synchronize(1_000);
    stream.dispose();
  });

  it('close() past its deadline ends the unfinished work as destroy() does', async () => {
    const comm = await communicator();
    const stream = new Stream();
    hooks!.setBusy(true);
    await withStream(stream, () => comm.allReduce(Tensor.full([2], 1, { dtype: 'float32', device: 'cuda:0' })));
    await comm.close(100);
    hooks!.setBusy(false);
    const err = await stream.synchronize(1_000).catch((e) => e);
    expect(err).toBeInstanceOf(GroupClosedError);
    expect((err as Error).message).toMatch(/with work in flight/);
    stream.dispose();
  });

  it('a split that fails (the parent aborted) refuses later splits instead of using the aborted parent', async () => {
    const comm = await communicator({ groupName: 'split-parent', splittable: true, singleRankOps: false });
    const { group } = open[open.length - 1];
    const sub = { group, groupName: 'split-child', color: 0, key: 0 };
    hooks!.setAsyncError(NcclResult.ncclRemoteError);
    await expect(comm.split(sub)).rejects.toBeInstanceOf(NcclError);
    hooks!.setAsyncError(0);
    const err = await comm.split(sub).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/was not created splittable \(or was destroyed\)/);
  });

  it('an NCCL asynchronous error fails the stream of unfinished work even when the stream looks idle', async () => {
    const comm = await communicator();
    const stream = new Stream();
    await withStream(stream, () => comm.allReduce(Tensor.full([2], 1, { dtype: 'float32', device: 'cuda:0' })));
    // NCCL ended its kernels: the stream is idle, nothing was delivered.
    hooks!.setAsyncError(NcclResult.ncclRemoteError);
    comm.destroy();
    hooks!.setAsyncError(0);
    const err = await stream.synchronize(1_000).catch((e) => e);
    expect(err).toBeInstanceOf(GroupClosedError);
    expect((err as Error).message).toMatch(/with work in flight/);
    stream.dispose();
  });

  it('an NCCL error noticed by the watchdog fails the stream with the NcclError', async () => {
    const comm = await communicator();
    const stream = new Stream();
    await withStream(stream, () => comm.allReduce(Tensor.full([2], 1, { dtype: 'float32', device: 'cuda:0' })));
    hooks!.setBusy(true);
    hooks!.setAsyncError(NcclResult.ncclRemoteError);
    const err = await withStream(stream, () => comm.synchronize(2_000)).catch((e) => e);
    hooks!.setBusy(false);
    expect(err).toBeInstanceOf(NcclError);
    expect(await stream.synchronize(1_000).catch((e) => e)).toBe(err);
    stream.dispose();
  });

  it('closing a weight transfer group leaves the trainer stream readable; a second group sends again', async () => {
    const w = Tensor.fromArray(new Float32Array([1, 2, 3, 4, 5, 6]), { device: 'cuda:0' });
    const update = { names: ['w'], dtypeNames: ['float32'], shapes: [[6]] };
    for (let round = 0; round < 2; round++) {
      const info = await initInfo(2);
      const worker = new NcclWeightTransferEngine({ device: 'cuda:0', timeoutMs: 5_000 });
      const [trainer] = await Promise.all([
        NcclWeightTransferEngine.trainerInit(info, { device: 'cuda:0', timeoutMs: 5_000 }),
        worker.initTransferEngine(info),
      ]);
      let received = 0;
      await Promise.all([
        NcclWeightTransferEngine.trainerSendWeights([['w', w]], { group: trainer }),
        worker.receiveWeights(update, (batch) => {
          received += batch.length;
          for (const [, t] of batch) t.dispose();
        }),
      ]);
      expect(received).toBe(1);
      await worker.shutdown();
      await trainer.close();
      // The trainer's stream, after its transfer group closed.
      expect(Array.from((await w.toArray()) as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
      const fresh = Tensor.full([2], round, { dtype: 'float32', device: 'cuda:0' });
      expect(Array.from((await fresh.toArray()) as Float32Array)).toEqual([round, round]);
    }
  });
});
