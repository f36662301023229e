/**
 * `npm run bench -- collectives-host`: where the host time of one collective call goes,
 * part by part, on a one-rank NCCL communicator in this process (no launch, no peer):
 *
 *   raw        the koffi ncclAllReduce alone, buffers preallocated (NCCL's own enqueue)
 *   enqueue    the backend primitive: failure check, flight record, stream and dtype
 *              lookups, the NCCL call, its return code, the watchdog's bookkeeping
 *   allocFree  the output tensor: Tensor.empty and its stream-ordered dispose
 *   checks     argument validation (device, reduce op, dtype) and contiguous()
 *   promise    an async call awaited (what every public method costs at least)
 *   allReduce  the whole public call, awaited, its output disposed; likewise broadcast,
 *              allGather and reduceScatter
 *
 * With the stand-in library (bench/stub-native) the NCCL and CUDA calls cost nothing, so
 * every figure is gpugroup's own host overhead; on a GPU host the same parts include the
 * real driver and NCCL work. µs per call: each part warmed up, then 5 rounds of
 * GPUGROUP_BENCH_ITERS calls (default 20 000) per part in batches of 64 with the stream
 * drained between batches (untimed); the median over batches of the mean per call
 * (./workers/collectives.ts timePhases).
 */
import { NcclDataType, NcclRedOp, cudaDeviceCount, nccl } from '../native/index.ts';
import { NcclCommunicator, type ReduceOp } from '../src/comm/index.ts';
import { StatelessProcessGroup } from '../src/store/index.ts';
import { Tensor, currentStream, setDevice } from '../src/tensor/index.ts';
import { countNativeCalls, formatPerOp } from './native-calls.ts';
import type { BenchOptions } from './options.ts';
import { timePhases } from './workers/collectives.ts';

/** The protected parts of the op path, reached for measurement only. */
interface OpPathParts {
  _allReduce(input: Tensor, output: Tensor, op: ReduceOp): void;
  checkTensor(argument: string, t: Tensor): void;
  checkReduce(t: Tensor, op: ReduceOp): void;
}

const BATCH = 64;
const ROUNDS = 5;

export async function run(opts: BenchOptions): Promise<void> {
  if (cudaDeviceCount() < 1) {
    opts.log('collectives-host: needs a CUDA device (or the stand-in library, bench/stub-native); skipped');
    return;
  }
  const iters = Number(process.env.GPUGROUP_BENCH_ITERS ?? 20_000);
  setDevice(0);
  const group = await StatelessProcessGroup.create({ host: '127.0.0.1', port: 0, rank: 0, worldSize: 1 });
  const comm = await NcclCommunicator.create({
    group,
    device: 'cuda:0',
    groupName: 'host-parts',
    singleRankOps: true,
  });
  try {
    const results = await measureParts(comm, iters);
    const lib = nccl();
    opts.log(`collectives-host: one-rank communicator, NCCL ${lib.version} from ${lib.path}; µs per call`);
    for (const [part, us] of Object.entries(results)) {
      opts.log(`  ${part.padEnd(14)} ${us.toFixed(3).padStart(8)}`);
      opts.json({ impl: 'gpugroup', op: 'host_part', part, world: 1, bytes: 8, us: +us.toFixed(3) });
    }
    const overhead = results.allReduce - results.raw;
    opts.log(`  allReduce - raw = ${overhead.toFixed(3)} µs of gpugroup host work per call`);
    opts.log('native calls per public call (libcudart, libnccl; the watchdog timer included):');
    for (const [name, perOp] of await callsPerOp(comm)) {
      opts.log(`  ${name.padEnd(22)} ${formatPerOp(perOp, CALL_COUNT_OPS)}`);
      opts.json({ impl: 'gpugroup', op: 'native_calls', part: name, world: 1, calls: Object.fromEntries(perOp) });
    }
  } finally {
    comm.destroy();
    await group.close();
  }
}

const CALL_COUNT_OPS = 1024;

/** Native calls of CALL_COUNT_OPS calls of each op variant (totals; divide by CALL_COUNT_OPS). */
async function callsPerOp(comm: NcclCommunicator): Promise<[string, Map<string, number>][]> {
  const device = 'cuda:0';
  const x = Tensor.full([2], 1, { dtype: 'float32', device });
  const m = Tensor.full([2, 2], 1, { dtype: 'float32', device });
  const variants: [string, () => Promise<unknown>][] = [
    ['allReduce [2]', async () => (await comm.allReduce(x)).dispose()],
    ['broadcast [2]', () => comm.broadcast(x, 0)],
    ['allGather [2] dim 0', async () => (await comm.allGather(x, 0)).dispose()],
    ['allGather [2,2] dim 0', async () => (await comm.allGather(m, 0)).dispose()],
    ['allGather [2,2] dim -1', async () => (await comm.allGather(m, -1)).dispose()],
    ['reduceScatter [2] dim 0', async () => (await comm.reduceScatter(x, 0)).dispose()],
    ['reduceScatter [2,2] dim 0', async () => (await comm.reduceScatter(m, 0)).dispose()],
    ['reduceScatter [2,2] dim -1', async () => (await comm.reduceScatter(m, -1)).dispose()],
  ];
  const out: [string, Map<string, number>][] = [];
  for (const [name, call] of variants) {
    await call(); // first-use work (cache fill) is not per op
    await comm.synchronize();
    const counts = await countNativeCalls(async () => {
      for (let i = 0; i < CALL_COUNT_OPS; i++) await call();
    });
    await comm.synchronize();
    out.push([name, counts]);
  }
  x.dispose();
  m.dispose();
  return out;
}

async function measureParts(comm: NcclCommunicator, iters: number): Promise<Record<string, number>> {
  const device = 'cuda:0';
  const x = Tensor.full([2], 1, { dtype: 'float32', device });
  const out = Tensor.empty([2], { dtype: 'float32', device });
  const big = Tensor.full([4], 1, { dtype: 'float32', device }); // reduce-scatter input (world 1: same size)
  const parts = comm as unknown as OpPathParts;
  const lib = nccl();
  const stream = currentStream().handle;
  const send = x.dataPtr;
  const recv = out.dataPtr;
  const noop = async (t: Tensor): Promise<Tensor> => t;
  const phases: Record<string, (n: number) => Promise<void> | void> = {
    raw: (n) => {
      for (let i = 0; i < n; i++)
        lib.ncclAllReduce(send, recv, 2, NcclDataType.ncclFloat32, NcclRedOp.sum, comm.comm, stream);
    },
    enqueue: (n) => {
      for (let i = 0; i < n; i++) parts._allReduce(x, out, 'sum');
    },
    allocFree: (n) => {
      for (let i = 0; i < n; i++) Tensor.empty([2], { dtype: 'float32', device }).dispose();
    },
    checks: (n) => {
      for (let i = 0; i < n; i++) {
        parts.checkTensor('input', x);
        parts.checkReduce(x, 'sum');
        x.contiguous();
      }
    },
    promise: async (n) => {
      for (let i = 0; i < n; i++) await noop(x);
    },
    allReduce: async (n) => {
      for (let i = 0; i < n; i++) (await comm.allReduce(x)).dispose();
    },
    broadcast: async (n) => {
      for (let i = 0; i < n; i++) await comm.broadcast(x, 0);
    },
    allGather: async (n) => {
      for (let i = 0; i < n; i++) (await comm.allGather(x, 0)).dispose();
    },
    reduceScatter: async (n) => {
      for (let i = 0; i < n; i++) (await comm.reduceScatter(big, 0)).dispose();
    },
  };
  const results = await timePhases(phases, { iters, batch: BATCH, rounds: ROUNDS, drain: () => comm.synchronize() });
  x.dispose();
  out.dispose();
  big.dispose();
  return results;
}
