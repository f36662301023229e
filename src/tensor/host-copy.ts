/**
 * Host memory copies for the staged host↔device paths (./staging.ts): between JS memory
 * (a typed array, SharedArrayBuffer-backed or not) and a page-locked chunk. One host
 * thread's memcpy moves ~10 GB/s, less into freshly allocated memory (each first touch
 * of a page faults), while PCIe moves ~50 GB/s; so a large piece is copied in slices on
 * several threads at once: the calling thread takes one slice and libuv's thread pool
 * (koffi's `.async`, UV_THREADPOOL_SIZE threads, 4 by default) the others. A memcpy needs
 * no CUDA context, so any thread may run it. Copies go through libc's memcpy by address
 * rather than TypedArray.set, which V8 runs as a relaxed-atomic word loop when either
 * side is a SharedArrayBuffer (host tensors are).
 */
import { libc } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';

/** Below this, TypedArray.set (no FFI call) is as fast as anything. */
const BY_ADDRESS_MIN_BYTES = 16 << 10;
/** The smallest slice worth a thread-pool round trip (a few microseconds each). */
export const MIN_SLICE_BYTES = 256 << 10;

/** The address of a typed array's first byte (its backing store, which V8 does not move). */
export function addressOf(view: ArrayBufferView): number {
  // Reading .buffer moves a small on-heap array's bytes off the heap first.
  void view.buffer;
  return libc().memmove(view, view, 0);
}

/** Copies `src` into `dst` (same length) on this thread. */
export function copyBytes(dst: Uint8Array, src: Uint8Array): void {
  if (src.byteLength < BY_ADDRESS_MIN_BYTES) {
    dst.set(src);
    return;
  }
  libc().memcpy(addressOf(dst), addressOf(src), src.byteLength);
}

/** How many slices a copy of `bytes` is cut into with `threads` threads (pure). */
export function sliceCount(bytes: number, threads: number): number {
  return Math.max(1, Math.min(threads, Math.floor(bytes / MIN_SLICE_BYTES)));
}

/**
 * Copies `src` into `dst` (same length) in up to GPUGROUP_COPY_THREADS slices at once:
 * this thread copies the first while the thread pool copies the others; resolves when
 * all are done. The caller keeps both arrays alive and unchanged until then.
 */
export function copyBytesParallel(dst: Uint8Array, src: Uint8Array): Promise<void> {
  const bytes = src.byteLength;
  const slices = sliceCount(bytes, settingAtFirstUse('GPUGROUP_COPY_THREADS'));
  if (slices <= 1) {
    copyBytes(dst, src);
    return Promise.resolve();
  }
  const memcpy = libc().memcpy;
  const to = addressOf(dst);
  const from = addressOf(src);
  // Slices of whole 4 KiB pages, so no two threads fault on the same page.
  const size = Math.ceil(bytes / slices / 4096) * 4096;
  const pool: Promise<void>[] = [];
  for (let at = size; at < bytes; at += size) {
    const n = Math.min(size, bytes - at);
    pool.push(
      new Promise((resolve, reject) => {
        memcpy.async(to + at, from + at, n, (err: unknown) => (err ? reject(err) : resolve()));
      }),
    );
  }
  memcpy(to, from, Math.min(size, bytes));
  return Promise.all(pool).then(() => undefined);
}
