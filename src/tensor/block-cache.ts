/**
 * The small-block cache of device storages (./storage.ts). Its own module: streams
 * (./stream.ts) return a stream's blocks when they are destroyed, and storages take and
 * give blocks, so neither imports the other for it.
 */
import { cuda } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';

/**
 * Small device blocks kept for reuse, per stream and size class: torch's caching
 * allocator in small. Only a block allocated and freed on the same stream S is kept,
 * and it is reused only by an allocation on S,
 * which the stream orders after every earlier use, exactly as cudaFreeAsync(ptr, S)
 * would have. cudaMallocAsync costs µs per call, a hot loop of small tensors (a
 * broadcastTensorDict per step) pays it per tensor otherwise. Blocks up to 64 MiB;
 * GPUGROUP_CACHE_MAX_BYTES (default 256 MiB per rank, 0 turns it off) bounds the total.
 * Never used while a graph capture allocates (the graph owns those).
 */
const CACHE_BLOCK_MAX = 64 << 20;
const CACHE_ROUND = 512;
/** Blocks above this round up to whole multiples of LARGE_ROUND (torch's caching allocator: 2 MiB). */
const SMALL_MAX = 1 << 20;
const LARGE_ROUND = 2 << 20;
const cache = new Map<bigint, Map<number, bigint[]>>();
let cachedBytes = 0;

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
export function takeCached(stream: bigint, size: number): bigint | null {
  const ptr = cache.get(stream)?.get(size)?.pop();
  if (ptr === undefined) return null;
  cachedBytes -= size;
  return ptr;
}

/**
 * Frees `ptr` on `stream`, or keeps it for the next allocation of `size` on that stream
 * (never while a graph capture allocates: `capturing`).
 */
export function cacheOrFree(ptr: bigint, size: number, stream: bigint, capturing: boolean): void {
  if (capturing || size > CACHE_BLOCK_MAX || cachedBytes + size > settingAtFirstUse('GPUGROUP_CACHE_MAX_BYTES')) {
    cuda().cudaFreeAsync(ptr, stream);
    return;
  }
  let bySize = cache.get(stream);
  if (!bySize) {
    bySize = new Map();
    cache.set(stream, bySize);
  }
  let list = bySize.get(size);
  if (!list) {
    list = [];
    bySize.set(size, list);
  }
  list.push(ptr);
  cachedBytes += size;
}

/** Frees every block cached for `stream` (stream-ordered); Stream.dispose calls it before destroying the stream. */
export function releaseCachedBlocks(stream: bigint): void {
  const bySize = cache.get(stream);
  if (!bySize) return;
  cache.delete(stream);
  for (const [size, list] of bySize) {
    for (const ptr of list) cuda().cudaFreeAsync(ptr, stream);
    cachedBytes -= size * list.length;
  }
}
