/**
 * Shared memory between processes of one node: a /dev/shm file mapped with mmap
 * (native/libc.ts), and futex wait/wake on words inside it (futex(2)). The mapping's
 * view is a plain external ArrayBuffer, on which Atomics.load/store/add work but
 * Atomics.wait/waitAsync are refused; futex is the blocking wait there.
 */
import { closeSync, ftruncateSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { setting } from '../env.ts';
import { SharedMemoryError } from '../errors.ts';
import { nanoid } from 'nanoid';
import { lastErrno, libc, SYS_FUTEX, viewMemory } from '../../native/index.ts';

// Shared (not PRIVATE) ops: the waiters live in other processes.
const FUTEX_WAIT = 0;
const FUTEX_WAKE = 1;
const PROT_READ_WRITE = 0x3;
const MAP_SHARED = 0x1;
const MAP_FAILED = 0xffffffffffffffffn;

/** Prefix of every segment file: leftovers in /dev/shm are recognisable by it. */
export const SHM_PREFIX = '/dev/shm/gpugroup-';

/**
 * Which node this rank is on: ranks with equal keys can share memory. The host name,
 * plus GPUGROUP_NODE_ID so that simulated nodes on one machine stay apart.
 */
export function nodeKey(): string {
  return `${hostname()}/${setting('GPUGROUP_NODE_ID')}`;
}

/** A mapped /dev/shm segment. */
export class ShmSegment {
  private unmapped = false;

  private constructor(
    /** The file's path (gone from /dev/shm once unlinked; the mapping stays). */
    readonly path: string,
    readonly bytes: number,
    /** Address of the mapping in this process. */
    readonly address: bigint,
    /** The mapping as an ArrayBuffer (external, not a SharedArrayBuffer). */
    readonly buffer: ArrayBuffer,
  ) {}

  /** The path a segment of this process with `id` gets. */
  static pathFor(id: string, pid = process.pid): string {
    return `${SHM_PREFIX}${pid}-${id}`;
  }

  /** Creates and maps a new zero-filled segment of `bytes` at `path` (default: a fresh name). */
  static create(bytes: number, path = ShmSegment.pathFor(nanoid(10))): ShmSegment {
    let fd: number;
    try {
      fd = openSync(path, 'wx+', 0o600);
    } catch (err) {
      throw new SharedMemoryError(path, `cannot create: ${(err as Error).message}`, { cause: err });
    }
    try {
      ftruncateSync(fd, bytes);
      return ShmSegment.map(path, fd, bytes);
    } catch (err) {
      unlinkQuietly(path);
      throw err instanceof SharedMemoryError
        ? err
        : new SharedMemoryError(path, `cannot size to ${bytes} bytes: ${(err as Error).message}`, { cause: err });
    } finally {
      closeSync(fd);
    }
  }

  /** Maps an existing segment created by a peer. */
  static open(path: string, bytes: number): ShmSegment {
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (err) {
      throw new SharedMemoryError(path, `cannot open a peer's segment: ${(err as Error).message}`, { cause: err });
    }
    try {
      return ShmSegment.map(path, fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  private static map(path: string, fd: number, bytes: number): ShmSegment {
    const raw = libc().mmap(null, bytes, PROT_READ_WRITE, MAP_SHARED, fd, 0);
    const address = raw === null ? 0n : BigInt(raw as bigint);
    if (address === 0n || address === MAP_FAILED)
      throw new SharedMemoryError(path, `mmap of ${bytes} bytes failed (errno ${lastErrno()})`);
    return new ShmSegment(path, bytes, address, viewMemory(address, bytes));
  }

  /** Removes the file name; mappings stay valid until unmapped. Idempotent. */
  unlink(): void {
    unlinkQuietly(this.path);
  }

  /** Unmaps the segment; every view over `buffer` becomes invalid. Idempotent. */
  unmap(): void {
    if (this.unmapped) return;
    this.unmapped = true;
    libc().munmap(this.address, this.bytes);
  }
}

/**
 * Unlinks every segment file process `pid` created. The coordinator calls it when a
 * rank process exits: a rank killed between creating a segment and the handshake that
 * unlinks it would otherwise leave the file behind. Returns how many it removed.
 */
export function removeSegmentsOf(pid: number): number {
  const dir = SHM_PREFIX.slice(0, SHM_PREFIX.lastIndexOf('/'));
  const prefix = `${SHM_PREFIX.slice(dir.length + 1)}${pid}-`;
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.startsWith(prefix));
  } catch {
    return 0; // no /dev/shm on this system: nothing was created there either
  }
  for (const f of names) unlinkQuietly(`${dir}/${f}`);
  return names.length;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone: unlinked by its owner once every rank had mapped it.
  }
}

/**
 * Sleeps on the thread pool until the int32 at `address` is woken or no longer equals
 * `expected`, or `timeoutMs` passes. Resolves in every case; the caller re-checks.
 */
export function futexWait(address: bigint, expected: number, timeoutMs: number): Promise<void> {
  const ns = BigInt(Math.max(1, Math.round(timeoutMs * 1e6)));
  // struct timespec { tv_sec, tv_nsec } (relative); kept alive by the closure until the call returns.
  const timeout = new BigInt64Array([ns / 1_000_000_000n, ns % 1_000_000_000n]);
  return new Promise((resolve) => {
    libc().syscall.async(SYS_FUTEX, address, FUTEX_WAIT, expected, timeout, null, 0, () => {
      void timeout;
      resolve();
    });
  });
}

/**
 * Gives the CPU to another runnable thread, if any (sched_yield(2)). A poller calls it
 * on every turn so that, with more pollers than cores, the one it waits for gets to run.
 */
export function yieldCpu(): void {
  libc().sched_yield();
}

/** Wakes every futex waiter on the int32 at `address`, in any process. */
export function futexWake(address: bigint): void {
  libc().syscall(SYS_FUTEX, address, FUTEX_WAKE, 0x7fffffff, null, null, 0);
}

export { SharedMemoryError };
