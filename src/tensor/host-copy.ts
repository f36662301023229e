/**
 * Host memory copies for the staged host↔device paths (./staging.ts): between JS memory
 * (a typed array, SharedArrayBuffer-backed or not) and a page-locked chunk. One host
 * thread's memcpy moves ~10 GB/s, less into freshly allocated memory (each first touch
 * of a page faults), while PCIe moves ~50 GB/s; so a large copy is cut into slices that
 * several threads copy at once: a few helper threads of this thread's own (worker
 * threads, started on the first large copy, each running libc's memcpy by address) and,
 * for {@link copyBytes}, the calling thread. The helpers take jobs through a
 * SharedArrayBuffer: a sequence word per helper that the caller bumps and the helper
 * spins on (sleeping in Atomics.wait after a short idle spell), and a done word the
 * caller spins on; a dispatch to a spinning helper costs well under a microsecond, where
 * a round trip through libuv's thread pool (koffi's `.async`) costs ~15 µs. A memcpy
 * needs no CUDA context, so any thread may run it. Copies go through memcpy by address
 * rather than TypedArray.set, which V8 runs as a relaxed-atomic word loop when either
 * side is a SharedArrayBuffer (host tensors are). The helpers are unref'd: they never
 * keep a program alive.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { libc } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';
import { GpuGroupError, TimeoutError } from '../errors.ts';

/** Below this, TypedArray.set (no FFI call) is as fast as anything. */
const BY_ADDRESS_MIN_BYTES = 16 << 10;
/** The smallest slice worth handing to a helper thread. */
export const MIN_SLICE_BYTES = 64 << 10;
/** Slices are whole 4 KiB pages, so that no two threads fault on the same page. */
const PAGE = 4096;

/** The address of a typed array's first byte (its backing store, which V8 does not move). */
export function addressOf(view: ArrayBufferView): number {
  // Reading .buffer moves a small on-heap array's bytes off the heap first.
  void view.buffer;
  return libc().memmove(view, view, 0);
}

/** How many slices a copy of `bytes` is cut into with `threads` threads (pure). */
export function sliceCount(bytes: number, threads: number): number {
  return Math.max(1, Math.min(threads, Math.floor(bytes / MIN_SLICE_BYTES)));
}

// One 64-byte line of Int32 words per helper (no false sharing between helpers):
// SEQ: the caller's job number (-1: exit); DONE: the last job number the helper finished;
// STATE: 0 starting, 1 ready, 2 gone. The job itself (dst, src, bytes) is three Float64
// words at the same line index of a second buffer (addresses are below 2^53).
const LINE_WORDS = 16;
const SEQ = 0;
const DONE = 1;
const STATE = 2;
const READY = 1;
const GONE = 2;

/**
 * A helper thread's program, evaluated as a CommonJS worker: koffi is required by the
 * path this module resolved, so the helper loads no TypeScript and no gpugroup module.
 * After each job it spins for `spinMs` before sleeping, so that the pieces of one
 * staged copy, which follow each other within microseconds, find it awake.
 */
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const koffi = require(workerData.koffi);
const memcpy = koffi.load('libc.so.6').func('uintptr_t memcpy(uintptr_t dst, uintptr_t src, size_t n)');
const words = new Int32Array(workerData.words);
const jobs = new Float64Array(workerData.jobs);
const base = workerData.index * ${LINE_WORDS};
const spinMs = workerData.spinMs;
let seen = Atomics.load(words, base + ${SEQ});
Atomics.store(words, base + ${STATE}, ${READY});
for (;;) {
  let seq = Atomics.load(words, base + ${SEQ});
  if (seq === seen) {
    const until = performance.now() + spinMs;
    for (let i = 0; seq === seen; i++) {
      if ((i & 255) === 255 && performance.now() > until) Atomics.wait(words, base + ${SEQ}, seen);
      seq = Atomics.load(words, base + ${SEQ});
    }
  }
  if (seq < 0) break;
  seen = seq;
  memcpy(jobs[base], jobs[base + 1], jobs[base + 2]);
  Atomics.store(words, base + ${DONE}, seq);
  Atomics.notify(words, base + ${DONE});
}
`;

/** How long a helper stays awake after a job (a staged copy's next piece comes sooner). */
const HELPER_SPIN_MS = 0.5;

interface Helpers {
  words: Int32Array;
  jobs: Float64Array;
  workers: Worker[];
  /** The job number last given to each helper. */
  seq: number[];
}

let helpers: Helpers | null = null;

/** Starts this thread's helpers (once; they report ready within tens of milliseconds). */
function startHelpers(count: number): Helpers {
  const words = new Int32Array(new SharedArrayBuffer(count * LINE_WORDS * 4));
  const jobs = new Float64Array(new SharedArrayBuffer(count * LINE_WORDS * 8));
  const koffi = createRequire(import.meta.url).resolve('koffi');
  const workers: Worker[] = [];
  for (let index = 0; index < count; index++) {
    const worker = new Worker(HELPER_SOURCE, {
      eval: true,
      // The rank's loader flags (tsx) are not needed by the helper's plain CommonJS.
      execArgv: [],
      workerData: { koffi, words: words.buffer, jobs: jobs.buffer, index, spinMs: HELPER_SPIN_MS },
      stdout: false,
      stderr: false,
    });
    // A helper that fails to start (no koffi, no libc) is never given a job: copies go on
    // with the others, or on the calling thread alone.
    const gone = (): void => {
      Atomics.store(words, index * LINE_WORDS + STATE, GONE);
    };
    worker.on('error', gone);
    worker.on('exit', gone);
    worker.unref();
    workers.push(worker);
  }
  return { words, jobs, workers, seq: new Array<number>(count).fill(0) };
}

/** The helpers of `h` in `state` (READY or GONE). */
function helpersIn(h: Helpers, state: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < h.workers.length; i++) {
    if (Atomics.load(h.words, i * LINE_WORDS + STATE) === state) out.push(i);
  }
  return out;
}

/** This thread's helpers that are ready for jobs (starting them on first use). */
function readyHelpers(): number[] {
  const count = settingAtFirstUse('GPUGROUP_COPY_THREADS') - 1;
  if (count <= 0) return [];
  helpers ??= startHelpers(count);
  return helpersIn(helpers, READY);
}

/**
 * Resolves once this thread's copy helpers are running (benchmarks and tests wait for it
 * so that the first copies they time are not the calling thread's alone). Resolves with
 * how many are ready when `timeoutMs` passes first.
 */
export async function copyHelpersReady(timeoutMs = 10_000): Promise<number> {
  const want = Math.max(0, settingAtFirstUse('GPUGROUP_COPY_THREADS') - 1);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const ready = readyHelpers().length;
    const gone = helpers ? helpersIn(helpers, GONE).length : 0;
    if (ready + gone >= want || performance.now() > deadline) return ready;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Stops this thread's copy helpers (the next large copy starts them again). */
export async function stopCopyHelpers(): Promise<void> {
  const h = helpers;
  helpers = null;
  if (!h) return;
  await Promise.all(h.workers.map((w) => w.terminate()));
}

/** A copy handed to helper threads: {@link wait} before touching either side. */
export interface CopyJob {
  /** Returns once every byte is copied; throws a TimeoutError past `deadlineMs` (performance.now() time). */
  wait(deadlineMs?: number): void;
}

const DONE_JOB: CopyJob = { wait: () => {} };

/** One slice per helper in `ready` (page-aligned), from byte `from` on; returns the helpers used. */
function dispatch(h: Helpers, ready: number[], dst: number, src: number, from: number, bytes: number): number[] {
  const size = Math.ceil((bytes - from) / ready.length / PAGE) * PAGE;
  const used: number[] = [];
  for (let k = 0, at = from; at < bytes; k++, at += size) {
    const i = ready[k];
    const line = i * LINE_WORDS;
    h.jobs[line] = dst + at;
    h.jobs[line + 1] = src + at;
    h.jobs[line + 2] = Math.min(size, bytes - at);
    h.seq[i] = (h.seq[i] + 1) & 0x3fffffff;
    Atomics.store(h.words, line + SEQ, h.seq[i]);
    Atomics.notify(h.words, line + SEQ);
    used.push(i);
  }
  return used;
}

/** Waits (spinning, then sleeping in short waits) until each helper in `used` finished its job. */
function join(h: Helpers, used: number[], deadlineMs: number): void {
  const leftMs = Math.max(0, Math.round(deadlineMs - performance.now()));
  for (const i of used) {
    const at = i * LINE_WORDS + DONE;
    const want = h.seq[i];
    for (let spins = 0; Atomics.load(h.words, at) !== want; spins++) {
      if ((spins & 1023) !== 1023) continue;
      if (Atomics.load(h.words, i * LINE_WORDS + STATE) === GONE) {
        throw new GpuGroupError('GPUGROUP_COPY_HELPER', 'a host copy helper thread exited during a copy');
      }
      const now = performance.now();
      if (now > deadlineMs) {
        throw new TimeoutError(
          'GPUGROUP_COPY_TIMEOUT',
          `a host copy helper thread did not finish its slice within ${leftMs} ms`,
          leftMs,
        );
      }
      // Past a few spins the slice is long (a fault-heavy first touch): sleep in 1 ms waits.
      if (spins > 1 << 16) Atomics.wait(h.words, at, Atomics.load(h.words, at), 1);
    }
  }
}

/** The copy deadline when the caller names none: a memcpy that takes a minute is a hung host. */
const DEFAULT_DEADLINE_MS = 60_000;

/**
 * Copies `src` into `dst` (same length). A large copy is cut into page-aligned slices:
 * this thread copies the first while the helper threads copy the others; returns when
 * every slice is done.
 */
export function copyBytes(
  dst: Uint8Array,
  src: Uint8Array,
  deadlineMs = performance.now() + DEFAULT_DEADLINE_MS,
): void {
  const bytes = src.byteLength;
  if (bytes < BY_ADDRESS_MIN_BYTES) {
    dst.set(src);
    return;
  }
  const memcpy = libc().memcpy;
  const to = addressOf(dst);
  const from = addressOf(src);
  const ready = bytes >= 2 * MIN_SLICE_BYTES ? readyHelpers() : [];
  const slices = sliceCount(bytes, ready.length + 1);
  if (slices <= 1 || !helpers) {
    memcpy(to, from, bytes);
    return;
  }
  const h = helpers;
  const first = Math.ceil(bytes / slices / PAGE) * PAGE;
  const used = dispatch(h, ready.slice(0, slices - 1), to, from, first, bytes);
  memcpy(to, from, first);
  join(h, used, deadlineMs);
}

/**
 * Starts copying `src` into `dst` (same length) on the helper threads alone, so that the
 * calling thread can enqueue device work meanwhile; a copy too small to split (or with
 * no helper ready) is done here before returning. Both arrays must stay alive and
 * untouched until the job's wait() returns.
 */
export function beginCopy(dst: Uint8Array, src: Uint8Array): CopyJob {
  const bytes = src.byteLength;
  const ready = bytes >= 2 * MIN_SLICE_BYTES ? readyHelpers() : [];
  const slices = sliceCount(bytes, ready.length);
  if (slices <= 1 || !helpers) {
    copyBytes(dst, src);
    return DONE_JOB;
  }
  const h = helpers;
  const used = dispatch(h, ready.slice(0, slices), addressOf(dst), addressOf(src), 0, bytes);
  return { wait: (deadlineMs = performance.now() + DEFAULT_DEADLINE_MS) => join(h, used, deadlineMs) };
}

/**
 * glibc's memcpy writes with non-temporal (cache-bypassing) stores above this size when
 * its tunable `glibc.cpu.x86_non_temporal_threshold` says so. A pinned chunk filled with
 * ordinary stores sits dirty in the copying cores' caches, and the copy engine's read of
 * it then runs at about half the link's speed (an H200 host: a 1 MiB DMA 29 µs from an
 * untouched chunk, 45–60 µs right after a memcpy into it, 29 µs after a non-temporal
 * one). glibc reads its tunables once, at process start: gpugroup sets this one in the
 * environment of the rank processes it starts (see {@link copyTunablesEnv}).
 */
export const NON_TEMPORAL_COPY_BYTES = 64 << 10;
const NON_TEMPORAL_TUNABLE = `glibc.cpu.x86_non_temporal_threshold=${NON_TEMPORAL_COPY_BYTES}`;

/**
 * The environment for a process that will run host↔device copies: GLIBC_TUNABLES with
 * the non-temporal memcpy threshold added, unless `env` (the child's environment as it
 * stands) sets GLIBC_TUNABLES already, the user's choice; x86-64 Linux only.
 */
export function copyTunablesEnv(env: Record<string, string | undefined>): Record<string, string> {
  if (process.platform !== 'linux' || process.arch !== 'x64' || env.GLIBC_TUNABLES !== undefined) return {};
  return { GLIBC_TUNABLES: NON_TEMPORAL_TUNABLE };
}
