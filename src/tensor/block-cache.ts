/**
 * The small-block cache of device storages (./storage.ts). Its own module: streams
 * (./stream.ts) return a stream's blocks when they are destroyed, and storages take and
 * give blocks, so neither imports the other for it.
 */
import { cuda } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';
import type { Stream } from './stream.ts';

/**
 * Small device blocks kept for reuse, per stream and size class: torch's caching
 * allocator in small. Only a block allocated and freed on the same stream S is kept,
 * and it is reused only by an allocation on S,
 * which the stream orders after every earlier use, exactly as cudaFreeAsync(ptr, S)
 * would have. cudaMallocAsync costs µs per call, a hot loop of small tensors (a
 * broadcastTensorDict per step) pays it per tensor otherwise. Blocks up to 64 MiB;
 * GPUGROUP_CACHE_MAX_BYTES (default 256 MiB per rank, 0 turns it off) bounds the total.
 * Never used while a graph capture allocates (the graph owns those). A stream keeps its
 * own blocks (Stream.blocks), so that a collective's output costs no lookup by handle.
 */
const CACHE_BLOCK_MAX = 64 << 20;
const CACHE_ROUND = 512;
/** Blocks above this round up to whole multiples of LARGE_ROUND (torch's caching allocator: 2 MiB). */
const SMALL_MAX = 1 << 20;
const LARGE_ROUND = 2 << 20;
let cachedBytes = 0;
/** GPUGROUP_CACHE_MAX_BYTES, read at the first free (-1: not yet). */
let maxBytes = -1;

/**
 * The size class of a request: rounded up to 512 B up to 1 MiB, to 2 MiB up to 64 MiB
 * (cached sizes), else exact.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= SMALL_MAX) return Math.ceil(bytes / CACHE_ROUND) * CACHE_ROUND;
  const rounded = Math.ceil(bytes / LARGE_ROUND) * LARGE_ROUND;
  return rounded <= CACHE_BLOCK_MAX ? rounded : bytes;
}

/** A cached block of `size` for `stream`, or null. */
export function takeCached(stream: Stream, size: number): bigint | null {
  const list = stream.blocks.get(size);
  if (list === undefined || list.length === 0) return null;
  cachedBytes -= size;
  return list.pop() as bigint;
}

/**
 * Frees `ptr` on `stream`, or keeps it for the next allocation of `size` on that stream
 * (never while a graph capture allocates: `capturing`).
 */
export function cacheOrFree(ptr: bigint, size: number, stream: Stream, capturing: boolean): void {
  if (maxBytes < 0) maxBytes = settingAtFirstUse('GPUGROUP_CACHE_MAX_BYTES');
  if (capturing || size > CACHE_BLOCK_MAX || cachedBytes + size > maxBytes) {
    cuda().cudaFreeAsync(ptr, stream.handle);
    return;
  }
  const list = stream.blocks.get(size);
  if (list === undefined) stream.blocks.set(size, [ptr]);
  else list.push(ptr);
  cachedBytes += size;
}

/** Frees every block cached for `stream` (stream-ordered); Stream.dispose calls it before destroying the stream. */
export function releaseCachedBlocks(stream: Stream): void {
  for (const [size, list] of stream.blocks) {
    for (const ptr of list) cuda().cudaFreeAsync(ptr, stream.handle);
    cachedBytes -= size * list.length;
  }
  stream.blocks.clear();
}
