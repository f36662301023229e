/**
 * The libc calls gpugroup makes: dlopen/dlerror (pinning loaded libraries), mmap/munmap
 * (shared-memory segments), futex through syscall(2), sched_yield, sched_setaffinity (a
 * rank's CPUs), memcpy (host copies by address, also on the thread pool), and the two
 * koffi helpers that go with raw memory (a view of mapped bytes, the calling thread's errno).
 * Bound on first use, like the CUDA and NCCL tables: importing gpugroup does not load
 * libc through koffi, so a host where that fails still imports the package and fails
 * only when shared memory or a CUDA/NCCL library is actually used.
 */
import koffi from 'koffi';
import { bindTable, type ProtoRow } from './bind.ts';
import { GpuGroupError, LibraryNotFoundError } from './errors.ts';

const LIBC = 'libc.so.6';

// Every row returns a value: libc reports failure as -1 / MAP_FAILED / NULL plus errno,
// which the callers turn into their own errors (SharedMemoryError, LibraryNotFoundError).
const table: readonly ProtoRow[] = [
  { proto: 'void *dlopen(const char *path, int flags)', returns: 'value' },
  { proto: 'const char *dlerror()', returns: 'value' },
  { proto: 'void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)', returns: 'value' },
  { proto: 'int munmap(void *addr, size_t length)', returns: 'value' },
  // syscall(2) is variadic; futex takes six integer/pointer arguments, which the x86-64
  // and aarch64 Linux ABIs pass in the same registers whether the prototype is variadic
  // or not, so a fixed prototype is exact and lets koffi run it on the thread pool (.async).
  {
    proto: 'long syscall(long nr, void *addr, int op, int val, void *timeout, void *addr2, int val3)',
    returns: 'value',
  },
  { proto: 'int sched_yield(void)', returns: 'value' },
  // pid 0: the calling thread (Linux), so that a thread rank pins itself alone.
  { proto: 'int sched_setaffinity(int pid, size_t size, const uint8_t *mask)', returns: 'value' },
  // Host copies between JS memory and page-locked staging chunks, by address, so that
  // they can also run on the libuv thread pool (.async) in parallel slices.
  { proto: 'uintptr_t memcpy(uintptr_t dst, uintptr_t src, size_t n)', returns: 'value' },
  // memmove(p, p, 0) returns p: the address koffi passes for a typed array (its backing
  // store, which V8 does not move), for the memcpy above.
  { proto: 'uintptr_t memmove(void *dst, const void *src, size_t n)', returns: 'value' },
];

/** A bound function that koffi can also run on the libuv thread pool. */
type AsyncCallable<A extends unknown[], R> = ((...args: A) => R) & {
  async(...args: [...A, (err: unknown, result: R) => void]): void;
};

/** The bound libc calls. */
export interface Libc {
  dlopen(path: string, flags: number): unknown;
  dlerror(): string | null;
  mmap(addr: null, length: number, prot: number, flags: number, fd: number, offset: number): bigint | number | null;
  munmap(addr: bigint, length: number): number;
  syscall: AsyncCallable<
    [nr: number, addr: bigint, op: number, val: number, timeout: BigInt64Array | null, addr2: null, val3: number],
    number
  >;
  sched_yield(): number;
  sched_setaffinity(pid: 0, size: number, mask: Uint8Array): number;
  memcpy: AsyncCallable<[dst: number, src: number, n: number], number>;
  memmove(dst: ArrayBufferView, src: ArrayBufferView, n: number): number;
}

/** futex(2)'s syscall number on this architecture (x86-64: 202, aarch64: 98). */
export const SYS_FUTEX = process.arch === 'arm64' ? 98 : 202;

let bound: Libc | undefined;

/** libc's calls, bound on first use; LibraryNotFoundError where libc cannot be loaded. */
export function libc(): Libc {
  if (bound) return bound;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(LIBC);
  } catch (err) {
    throw new LibraryNotFoundError('libc', [LIBC], '', `koffi could not load it: ${(err as Error).message}`);
  }
  // No row is a status row, so the factory is never called.
  const never = (code: number, call: string) => new GpuGroupError('GPUGROUP_LIBC', `${call} returned ${code}`);
  bound = bindTable(lib, table, never) as unknown as Libc;
  return bound;
}

/** `bytes` of memory at `address` (mapped by this process) as an external ArrayBuffer. */
export function viewMemory(address: bigint, bytes: number): ArrayBuffer {
  return koffi.view(address, bytes) as ArrayBuffer;
}

/** errno of the calling thread's last failed libc call. */
export function lastErrno(): number {
  return koffi.errno();
}
