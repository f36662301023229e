/**
 * Shared memory that every rank of a node can map: a /dev/shm file mapped with mmap
 * through koffi (notes/node-stack §7). It works the same from processes and from
 * worker threads, so the CPU communicator has one transport for both modes. The
 * owner unlinks the file as soon as every peer has mapped it, so a crash leaves
 * nothing behind in /dev/shm.
 */
import { closeSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import koffi from 'koffi';
import { nanoid } from 'nanoid';

const libc = koffi.load('libc.so.6');
const mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)');
const munmap = libc.func('int munmap(void *addr, size_t length)');
const PROT_READ_WRITE = 0x3;
const MAP_SHARED = 0x1;
const MAP_FAILED = 0xffffffffffffffffn;

/** A mapped shared-memory segment. */
export class ShmSegment {
  private unmapped = false;

  private constructor(readonly path: string, readonly bytes: number, private readonly ptr: bigint, readonly buffer: ArrayBuffer) {}

  /** Creates and maps a new zero-filled segment of `bytes`. */
  static create(bytes: number): ShmSegment {
    const path = `/dev/shm/gpugroup-${process.pid}-${nanoid(10)}`;
    const fd = openSync(path, 'wx+', 0o600);
    try {
      ftruncateSync(fd, bytes);
      return ShmSegment.map(path, fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  /** Maps an existing segment created by a peer. */
  static open(path: string, bytes: number): ShmSegment {
    const fd = openSync(path, 'r+');
    try {
      return ShmSegment.map(path, fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  private static map(path: string, fd: number, bytes: number): ShmSegment {
    const raw = mmap(null, bytes, PROT_READ_WRITE, MAP_SHARED, fd, 0) as bigint | null;
    const ptr = raw === null ? 0n : BigInt(raw);
    if (ptr === 0n || ptr === MAP_FAILED) throw new Error(`mmap of ${path} (${bytes} bytes) failed`);
    return new ShmSegment(path, bytes, ptr, koffi.view(ptr, bytes));
  }

  /** Removes the file name; mappings stay valid until unmapped. Idempotent. */
  unlink(): void {
    try {
      unlinkSync(this.path);
    } catch {
      // Already unlinked (by the owner, or after a crash clean-up).
    }
  }

  /** Unmaps the segment; every view over `buffer` becomes invalid. Idempotent. */
  unmap(): void {
    if (this.unmapped) return;
    this.unmapped = true;
    munmap(this.ptr, this.bytes);
  }
}
