/**
 * `npm run bench -- copies`: host↔device copies on one GPU, timed as a user sees them
 * (the call and the wait for the stream), best of N and median, at 4 KiB, 1 MiB,
 * 16 MiB and 256 MiB (--max-bytes caps them):
 *   gpugroup           h2d: Tensor.fromArray(Float32Array, { device }) + stream sync;
 *                      d2h: toArray(); h2d_to / d2h_to: a host tensor's to('cuda:0') + sync
 *                      and a device tensor's to('cpu'); h2d_async / d2h_async: the same
 *                      through toAsync (host memcpy in parallel slices); h2d_pinned / d2h_pinned: copyFrom
 *                      between a pinned host tensor and a device tensor + stream sync
 *   gpugroup-pageable  h2d, d2h with staging off (GPUGROUP_STAGING_CHUNKS=0: the driver's
 *                      pageable path, what gpugroup did before staging)
 *   cuda               the raw calls through koffi in this process: cudaMemcpyAsync from
 *                      and to pinned memory (h2d_pinned, d2h_pinned), timed in rounds
 *                      alternating with gpugroup's and followed by the same stream sync,
 *                      and from and to a pageable Float32Array (h2d, d2h), then
 *                      cudaStreamSynchronize
 * JSON lines: { impl, op, world: 1, bytes, us (best), p50_us, GBps (at best) }, the
 * fields of bench/baselines/torch_copies.py, which times torch the same way. Every
 * path's bytes are checked once before timing. Then the packing measurements of
 * ./copies-packing.ts.
 */
import { MemcpyKind, cuda, cudaDeviceCount, nccl } from '../native/index.ts';
import { Tensor, currentStream, setDevice } from '../src/tensor/index.ts';
import { copyHelpersReady } from '../src/tensor/host-copy.ts';
import { configureStaging, stagingConfig } from '../src/tensor/staging.ts';
import { runPacking } from './copies-packing.ts';
import type { BenchOptions } from './options.ts';

const SIZES = [4 << 10, 1 << 20, 16 << 20, 256 << 20];

/** Iterations by size: enough for a stable best and median, 256 MiB kept to a few. */
const itersFor = (bytes: number): number =>
  bytes <= 64 << 10 ? 300 : bytes <= 1 << 20 ? 80 : bytes <= 16 << 20 ? 20 : 6;

interface Timing {
  best: number;
  p50: number;
}

/** Untimed calls before the timed ones: at least 2, and until 50 ms have passed (at most 5,000). */
const WARM_MS = 50;
const WARM_MIN = 2;
const WARM_MAX = 5000;

/**
 * `iters` timings of `body` in µs, after the warm-up: small copies run thousands of calls
 * first, so that each path is timed compiled rather than in the interpreter.
 */
async function samples(iters: number, body: () => unknown): Promise<number[]> {
  const start = performance.now();
  for (let i = 0; i < WARM_MAX && (i < WARM_MIN || performance.now() - start < WARM_MS); i++) await body();
  const xs: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await body();
    xs.push((performance.now() - t0) * 1000);
  }
  return xs;
}

function summary(xs: number[]): Timing {
  xs.sort((a, b) => a - b);
  return { best: xs[0], p50: xs[xs.length >> 1] };
}

async function timeIt(iters: number, body: () => unknown): Promise<Timing> {
  return summary(await samples(iters, body));
}

/**
 * Two bodies timed in alternating rounds (`iters` each in all), so that neither gains
 * from the host or the GPU warming up in between: for two figures compared as a ratio.
 */
async function timePair(iters: number, a: () => unknown, b: () => unknown): Promise<[Timing, Timing]> {
  const rounds = 3;
  const per = Math.ceil(iters / rounds);
  const xa: number[] = [];
  const xb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    xa.push(...(await samples(per, a)));
    xb.push(...(await samples(per, b)));
  }
  return [summary(xa), summary(xb)];
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Which libraries this process loaded (the table prints them). */
function reportLibraries(opts: BenchOptions): void {
  const rt = cuda();
  const v = new Int32Array(1);
  rt.cudaRuntimeGetVersion(v);
  const runtime = v[0];
  rt.cudaDriverGetVersion(v);
  let ncclInfo = { path: 'not found', version: '' };
  try {
    const lib = nccl();
    ncclInfo = { path: lib.path, version: lib.version };
  } catch {}
  opts.log(
    `copies: libcudart ${rt.path} (runtime ${runtime}, driver ${v[0]}); libnccl ${ncclInfo.path} ${ncclInfo.version}`,
  );
  opts.json({
    impl: 'gpugroup',
    op: 'libraries',
    cudart: rt.path,
    cudaRuntime: runtime,
    cudaDriver: v[0],
    nccl: ncclInfo.path,
    ncclVersion: ncclInfo.version,
    staging: stagingConfig(),
  });
}

export async function run(opts: BenchOptions): Promise<void> {
  if (cudaDeviceCount() < 1) {
    opts.log('copies: needs a GPU; skipped');
    return;
  }
  setDevice(0);
  reportLibraries(opts);
  const stream = currentStream();
  const rt = cuda();
  const sync = () => stream.synchronize(60_000);
  const emit = (impl: string, op: string, bytes: number, t: { best: number; p50: number }) => {
    const GBps = +(bytes / t.best / 1e3).toFixed(2);
    opts.log(
      `copies: ${impl.padEnd(18)} ${op.padEnd(11)} ${String(bytes).padStart(10)} B  best ${t.best.toFixed(1).padStart(9)} us  p50 ${t.p50.toFixed(1).padStart(9)} us  ${GBps} GB/s`,
    );
    opts.json({ impl, op, world: 1, bytes, us: +t.best.toFixed(2), p50_us: +t.p50.toFixed(2), GBps });
  };
  const staged = stagingConfig();
  // The copy helper threads start on the first large copy; timing starts once they run.
  const helpers = await copyHelpersReady();
  const tunables =
    process.env.GLIBC_TUNABLES ?? 'unset (rank processes gpugroup starts get the non-temporal threshold)';
  opts.log(`copies: ${helpers + 1} threads copy host memory (GPUGROUP_COPY_THREADS); GLIBC_TUNABLES ${tunables}`);
  for (const bytes of SIZES.filter((b) => b <= (opts.maxBytes ?? Number.POSITIVE_INFINITY))) {
    const n = bytes / 4;
    const iters = itersFor(bytes);
    const src = Float32Array.from({ length: n }, (_, i) => (i % 1000) - 500);
    const host = Tensor.fromArray(src);
    const dev = Tensor.fromArray(src, { device: 'cuda:0' });
    const pinnedSrc = Tensor.fromArray(src, { pinned: true });
    const pinnedDst = Tensor.empty([n], { pinned: true });
    const devDst = Tensor.empty([n], { device: 'cuda:0' });
    const pageableDst = new Float32Array(n);

    // Every path's bytes, once, before anything is timed.
    const checks: Record<string, () => Promise<boolean>> = {
      h2d: async () => same((await dev.toArray()) as Float32Array, src),
      d2h_to: async () => same(dev.to('cpu').hostView() as Float32Array, src),
      h2d_to: async () => same((await host.to('cuda:0').toArray()) as Float32Array, src),
      h2d_async: async () => same((await (await host.toAsync('cuda:0')).toArray()) as Float32Array, src),
      d2h_async: async () => same((await dev.toAsync('cpu')).hostView() as Float32Array, src),
      pinned: async () => {
        devDst.copyFrom(pinnedSrc);
        pinnedDst.copyFrom(devDst);
        await sync();
        return same(pinnedDst.hostView() as Float32Array, src);
      },
    };
    for (const [name, check] of Object.entries(checks)) {
      if (!(await check())) throw new Error(`copies: ${name} at ${bytes} B moved wrong bytes`);
    }

    const ours: Record<string, () => unknown> = {
      h2d: async () => {
        const t = Tensor.fromArray(src, { device: 'cuda:0' });
        await sync();
        t.dispose();
      },
      d2h: () => dev.toArray(),
      h2d_to: async () => {
        const t = host.to('cuda:0');
        await sync();
        t.dispose();
      },
      d2h_to: () => dev.to('cpu'),
      h2d_async: async () => {
        const t = await host.toAsync('cuda:0');
        await sync();
        t.dispose();
      },
      d2h_async: () => dev.toAsync('cpu'),
    };
    for (const [op, body] of Object.entries(ours)) emit('gpugroup', op, bytes, await timeIt(iters, body));

    // Pinned: copyFrom against the raw cudaMemcpyAsync, alternating, each followed by the
    // same awaited stream.synchronize(), so that the pair compares the copies.
    const pinnedPtr = (t: Tensor) => (t.storage as unknown as { ptr: bigint }).ptr;
    const pinnedPairs: Record<string, [() => unknown, () => unknown]> = {
      h2d_pinned: [
        async () => {
          devDst.copyFrom(pinnedSrc);
          await sync();
        },
        async () => {
          rt.cudaMemcpyAsync(devDst.dataPtr, pinnedPtr(pinnedSrc), bytes, MemcpyKind.HostToDevice, stream.handle);
          await sync();
        },
      ],
      d2h_pinned: [
        async () => {
          pinnedDst.copyFrom(dev);
          await sync();
        },
        async () => {
          rt.cudaMemcpyAsync(pinnedPtr(pinnedDst), dev.dataPtr, bytes, MemcpyKind.DeviceToHost, stream.handle);
          await sync();
        },
      ],
    };
    for (const [op, [mine, raw]] of Object.entries(pinnedPairs)) {
      const [a, b] = await timePair(iters, mine, raw);
      emit('gpugroup', op, bytes, a);
      emit('cuda', op, bytes, b);
    }

    configureStaging({ chunks: 0 });
    try {
      emit('gpugroup-pageable', 'h2d', bytes, await timeIt(iters, ours.h2d));
      emit('gpugroup-pageable', 'd2h', bytes, await timeIt(iters, ours.d2h));
    } finally {
      configureStaging({ chunks: staged.chunks });
    }

    const raw: Record<string, () => void> = {
      h2d: () => {
        rt.cudaMemcpyAsync(devDst.dataPtr, src, bytes, MemcpyKind.HostToDevice, stream.handle);
        rt.cudaStreamSynchronize(stream.handle);
      },
      d2h: () => {
        rt.cudaMemcpyAsync(pageableDst, dev.dataPtr, bytes, MemcpyKind.DeviceToHost, stream.handle);
        rt.cudaStreamSynchronize(stream.handle);
      },
    };
    for (const [op, body] of Object.entries(raw)) emit('cuda', op, bytes, await timeIt(iters, body));

    for (const t of [dev, devDst, pinnedSrc, pinnedDst]) t.dispose();
    await sync();
  }
  await runPacking(opts);
}
