/**
 * `npm run bench -- weights [--backend cpu] [--world N]`: the weight transfer engine,
 * trainer (this process; cuda:0 with NCCL) → N-1 inference workers (cuda:1..). Effective
 * GB/s (`busbw` = state-dict bytes / seconds) of a 4 GiB state dict of 512 bf16 tensors,
 * packed in 1 GiB × 2 buffers and unpacked (one broadcast per tensor), beside a raw
 * 1 GiB broadcast in the same topology. Compare that reference with nccl-tests'
 * broadcast_perf at 1 GiB from the same machine.
 * With --backend cpu: a 64 MiB state dict, 16 MiB × 2 buffers, 2 workers.
 * --share-devices: trainer and workers all on GPU 0 (launchGroup's shareDevices; this
 * process poses as one more host for NCCL): the host time per tensor only, since
 * device timings mean nothing there.
 */
import { cudaDeviceCount } from '../native/index.ts';
import { type Group, launchGroup } from '../src/orchestrator/index.ts';
import { sharedDeviceEnv } from '../src/orchestrator/launch.ts';
import { freePort } from '../src/store/index.ts';
import { CudaEvent, Tensor, setDevice } from '../src/tensor/index.ts';
import {
  NcclWeightTransferEngine,
  packedBroadcastProducer,
  type NamedTensors,
  type WeightTransferGroup,
} from '../src/weights/index.ts';
import type { BenchOptions } from './options.ts';

const worker = new URL('./workers/weights-worker.ts', import.meta.url);
const TENSORS = 512;
const WARMUP = 1;
const ITERS = 3;

const gbps = (bytes: number, s: number): number => +(bytes / s / 1e9).toFixed(2);

export async function run(opts: BenchOptions): Promise<void> {
  const gpus = cudaDeviceCount();
  const backend = opts.backend ?? 'nccl';
  const shared = backend === 'nccl' && (opts.shareDevices ?? false);
  const world = opts.world ?? (shared ? 2 : backend === 'nccl' ? gpus : 3);
  if (world < 2) {
    opts.log(`weights: needs a trainer and at least one worker (--world >= 2), got ${world}`);
    return;
  }
  if (backend === 'nccl' && gpus < (shared ? 1 : world)) {
    opts.log(
      `weights: NCCL needs ${world} GPUs (trainer + ${world - 1} workers), ${gpus} visible; skipped (try --backend cpu)`,
    );
    return;
  }
  const device = backend === 'nccl' ? 'cuda:0' : 'cpu';
  const totalBytes = backend === 'nccl' ? 4 * 2 ** 30 : 64 * 2 ** 20;
  const bufferBytes = backend === 'nccl' ? 2 ** 30 : 16 * 2 ** 20;
  const refBytes = bufferBytes;
  const workers = world - 1;
  if (backend === 'nccl') setDevice(0);
  if (shared) {
    // What launchGroup's shareDevices gives each rank, for the trainer in this process.
    Object.assign(
      process.env,
      sharedDeviceEnv(`gpugroup-trainer-${process.pid}`, (name) => process.env[name]),
    );
  }
  const group = await launchGroup({
    worldSize: workers,
    worker,
    backend,
    mode: 'process',
    timeoutMs: 300_000,
    devices: backend === 'nccl' ? Array.from({ length: workers }, (_, i) => (shared ? 0 : i + 1)) : undefined,
    shareDevices: shared,
  });
  let trainer: WeightTransferGroup | null = null;
  let ref: WeightTransferGroup | null = null;
  const numel = totalBytes / TENSORS / 2;
  const weights: NamedTensors = Array.from({ length: TENSORS }, (_, i) => [
    `layers.${i}.weight`,
    Tensor.zeros([numel], { dtype: 'bfloat16', device }),
  ]);
  try {
    const info = { masterAddress: '127.0.0.1', masterPort: await freePort(), rankOffset: 1, worldSize: world };
    const refInfo = { ...info, masterPort: await freePort() };
    const [t, , r] = await Promise.all([
      NcclWeightTransferEngine.trainerInit(info, { device, timeoutMs: 300_000 }),
      group.callAll('join', info, refInfo),
      NcclWeightTransferEngine.trainerInit(refInfo, { device, timeoutMs: 300_000 }),
    ]);
    trainer = t;
    ref = r;
    opts.log(
      `weights: ${backend}, trainer on ${device} + ${workers} workers; state dict ${totalBytes / 2 ** 20} MiB in ${TENSORS} bf16 tensors`,
    );
    await hostPerTensor(opts, trainer, group, device);
    if (shared || process.env.GPUGROUP_BENCH_WEIGHTS_HOST_ONLY === '1') return;
    opts.log('#        bytes  tensors  packed     time(s)  GB/s');
    for (const packed of [true, false]) {
      const update = {
        names: weights.map(([n]) => n),
        dtypeNames: weights.map(([, t]) => t.dtype),
        shapes: weights.map(([, t]) => [...t.shape]),
        packed,
        packedBufferSizeBytes: bufferBytes,
        packedNumBuffers: 2,
      };
      const times: number[] = [];
      for (let i = 0; i < WARMUP + ITERS; i++) {
        const t0 = performance.now();
        await Promise.all([
          NcclWeightTransferEngine.trainerSendWeights(weights, {
            group: trainer,
            packed,
            packedBufferSizeBytes: bufferBytes,
            packedNumBuffers: 2,
          }),
          group.callAll('receive', update),
        ]);
        if (i >= WARMUP) times.push((performance.now() - t0) / 1000);
      }
      const s = Math.min(...times);
      const rec = {
        impl: 'gpugroup',
        backend,
        op: 'weight_transfer',
        world,
        bytes: totalBytes,
        tensors: TENSORS,
        packed,
        s: +s.toFixed(4),
        busbw: gbps(totalBytes, s),
      };
      opts.log(
        `${String(totalBytes).padStart(14)} ${String(TENSORS).padStart(8)} ${String(packed).padStart(7)} ` +
          `${s.toFixed(4).padStart(11)} ${String(rec.busbw).padStart(5)}`,
      );
      opts.json(rec);
    }
    // The engine's fixed cost: an update of one 2-byte tensor (handshake, calls, final sync).
    {
      const tiny: NamedTensors = [['tiny', Tensor.zeros([1], { dtype: 'bfloat16', device })]];
      const update = {
        names: ['tiny'],
        dtypeNames: ['bfloat16'],
        shapes: [[1]],
        packed: true,
        packedBufferSizeBytes: bufferBytes,
        packedNumBuffers: 2,
      };
      const times: number[] = [];
      for (let i = 0; i < 6; i++) {
        const t0 = performance.now();
        await Promise.all([
          NcclWeightTransferEngine.trainerSendWeights(tiny, {
            group: trainer,
            packed: true,
            packedBufferSizeBytes: bufferBytes,
            packedNumBuffers: 2,
          }),
          group.callAll('receive', update),
        ]);
        if (i > 0) times.push((performance.now() - t0) * 1000);
      }
      tiny[0][1].dispose();
      opts.log(
        `engine fixed cost (one 2-byte tensor, packed): min ${Math.min(...times).toFixed(0)} us, median ` +
          `${times.sort((a, b) => a - b)[2].toFixed(0)} us`,
      );
    }
    // The packed pipeline alone (no engine, no handshake), on the reference group: where the engine's time goes.
    {
      const specs = weights.map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
      const times: number[] = [];
      for (let i = 0; i < WARMUP + ITERS; i++) {
        const t0 = performance.now();
        await Promise.all([
          packedBroadcastProducer(weights, r.communicator, {
            src: 0,
            bufferSizeBytes: bufferBytes,
            numBuffers: 2,
          }).then(() => r.communicator.synchronize()),
          group.callAll('packedPipeline', { specs, bufferBytes }),
        ]);
        if (i >= WARMUP) times.push((performance.now() - t0) / 1000);
      }
      const s = Math.min(...times);
      opts.log(
        `packed pipeline alone (packedBroadcastProducer/Consumer, no handshake): ${s.toFixed(4)} s, ${gbps(totalBytes, s)} GB/s`,
      );
      // The trainer's packing alone: the same producer with a broadcast that moves nothing.
      const packOnly = {
        device: r.communicator.device,
        broadcast: async (t: Tensor) => t,
        synchronize: (ms?: number) => r.communicator.synchronize(ms),
      };
      const packTimes: number[] = [];
      for (let i = 0; i < WARMUP + ITERS; i++) {
        const t0 = performance.now();
        await packedBroadcastProducer(weights, packOnly, { src: 0, bufferSizeBytes: bufferBytes, numBuffers: 2 });
        await r.communicator.synchronize();
        if (i >= WARMUP) packTimes.push((performance.now() - t0) / 1000);
      }
      const p = Math.min(...packTimes);
      opts.log(
        `packing alone (the producer with a broadcast that moves nothing): ${p.toFixed(4)} s, ${gbps(totalBytes, p)} ` +
          `GB/s of tensors packed`,
      );
    }
    // Reference: raw broadcasts of one packed buffer's size, nccl-tests' method (events around back-to-back ops).
    const refIters = backend === 'nccl' ? 20 : 5;
    const refDone = group.callAll('refBroadcast', { bytes: refBytes, warmup: 2, iters: refIters });
    const comm = r.communicator;
    const buf = Tensor.zeros([refBytes], { dtype: 'uint8', device });
    for (let i = 0; i < 2; i++) await comm.broadcast(buf, 0);
    await comm.synchronize();
    await r.processGroup.barrier();
    let seconds: number;
    if (backend === 'nccl') {
      const start = new CudaEvent(true).record();
      for (let i = 0; i < refIters; i++) await comm.broadcast(buf, 0);
      const end = new CudaEvent(true).record();
      await comm.synchronize();
      seconds = end.elapsedMsSince(start) / 1000 / refIters;
      start.dispose();
      end.dispose();
    } else {
      const t0 = performance.now();
      for (let i = 0; i < refIters; i++) await comm.broadcast(buf, 0);
      await comm.synchronize();
      seconds = (performance.now() - t0) / 1000 / refIters;
    }
    await refDone;
    buf.dispose();
    opts.log(
      `reference: raw broadcast of ${refBytes / 2 ** 20} MiB in the same group: ${gbps(refBytes, seconds)} GB/s busbw ` +
        `(compare with nccl-tests broadcast_perf at 1 GiB; weight_transfer busbw / this = the engine's efficiency)`,
    );
  } finally {
    for (const [, t] of weights) t.dispose();
    await group.callAll('leave').catch((err: Error) => opts.log(`weights: leave failed: ${err.message}`));
    await trainer?.close();
    await ref?.close();
    await group.shutdown();
  }
}

/**
 * Host time per tensor on each side: 1024 tensors of 16 KiB (packed in 1 MiB buffers ×
 * 2, and unpacked), the worker's loadWeights busy for 0 or 20 µs per tensor. The
 * trainer's time is trainerSendWeights' (per tensor); the worker's is its
 * receiveWeights' (per tensor, its own work included): with that work overlapping the
 * next transfer, the worker's figure grows by less than the work. Median of 5.
 */
async function hostPerTensor(
  opts: BenchOptions,
  trainer: WeightTransferGroup,
  group: Group,
  device: string,
): Promise<void> {
  const count = 1024;
  const small: NamedTensors = Array.from({ length: count }, (_, i) => [
    `small.${i}`,
    Tensor.zeros([8192], { dtype: 'bfloat16', device }),
  ]);
  const bufferBytes = 2 ** 20;
  try {
    for (const packed of [true, false]) {
      for (const workUs of [0, 20]) {
        const update = {
          names: small.map(([n]) => n),
          dtypeNames: small.map(([, t]) => t.dtype),
          shapes: small.map(([, t]) => [...t.shape]),
          packed,
          packedBufferSizeBytes: bufferBytes,
          packedNumBuffers: 2,
        };
        const sides: { trainer: number; worker: number }[] = [];
        for (let i = 0; i < 6; i++) {
          const t0 = performance.now();
          const [trainerMs, worker] = await Promise.all([
            NcclWeightTransferEngine.trainerSendWeights(small, {
              group: trainer,
              packed,
              packedBufferSizeBytes: bufferBytes,
              packedNumBuffers: 2,
            }).then(() => performance.now() - t0),
            group.callAll<number>('receiveWithWork', { update, workUs }),
          ]);
          if (i > 0) sides.push({ trainer: trainerMs, worker: Math.max(...worker) });
        }
        const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        const trainerUs = +((med(sides.map((x) => x.trainer)) * 1000) / count).toFixed(2);
        const workerUs = +((med(sides.map((x) => x.worker)) * 1000) / count).toFixed(2);
        opts.log(
          `host time per tensor (${count} × 16 KiB, packed ${packed}, worker work ${workUs} us): trainer ${trainerUs} us, worker ${workerUs} us`,
        );
        for (const [side, us] of [
          ['trainer', trainerUs],
          ['worker', workerUs],
        ] as const)
          opts.json({
            impl: 'gpugroup',
            op: `weights_host_${side}`,
            world: group.worldSize + 1,
            tensors: count,
            packed,
            work_us: workUs,
            us,
          });
      }
    }
  } finally {
    for (const [, t] of small) t.dispose();
  }
}
