/**
 * Page-locked host memory (cudaMallocHost) as an ArrayBuffer: the copy engine reads and
 * writes it directly, so a copy from or to it is one cudaMemcpyAsync at the link's speed
 * and returns at once (torch's `pin_memory()`). The staging chunks of ./staging.ts and
 * pinned host tensors are both made here.
 */
import { cuda, cudaDeviceCount, viewMemory } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { HostStorage } from './storage.ts';

/** Allocates `bytes` of pinned memory and maps it as an ArrayBuffer (external, not shared). */
export function mapPinned(bytes: number): { ptr: bigint; buffer: ArrayBuffer; view: Uint8Array } {
  if (cudaDeviceCount() < 1) {
    throw new InvalidArgumentError(
      'pinned',
      'pinned host memory needs the CUDA runtime and a CUDA device; none is visible here (use an ordinary host tensor)',
    );
  }
  const out = new BigUint64Array(1);
  cuda().cudaMallocHost(out, Math.max(bytes, 1));
  const ptr = out[0];
  const buffer = viewMemory(ptr, Math.max(bytes, 1));
  return { ptr, buffer, view: new Uint8Array(buffer, 0, bytes) };
}

interface PinnedHeld {
  ptr: bigint;
}

// Safety net only (STYLE §7). The registered target is the ArrayBuffer, not the storage:
// typed arrays a user took from hostView() keep the buffer, and with it the memory, alive.
const registry = new FinalizationRegistry<PinnedHeld>((held) => {
  if (held.ptr === 0n) return;
  try {
    cuda().cudaFreeHost(held.ptr);
  } catch {
    // The runtime is gone (process exit): the driver reclaims it.
  }
});

/**
 * Host bytes in page-locked memory. Host code reads and writes them like any host
 * tensor; device copies from and to them are single stream-ordered cudaMemcpyAsync calls.
 * dispose() frees the memory at once: views taken earlier must not be used after it.
 */
export class PinnedHostStorage extends HostStorage {
  private readonly held: PinnedHeld;

  private constructor(buffer: ArrayBuffer, bytes: number, ptr: bigint) {
    super(buffer, 0, bytes);
    this.held = { ptr };
    registry.register(buffer, this.held, this);
  }

  /** Allocates `bytes` of pinned host memory (zeroed). */
  static allocatePinned(bytes: number): PinnedHostStorage {
    const { ptr, buffer, view } = mapPinned(bytes);
    view.fill(0);
    return new PinnedHostStorage(buffer, bytes, ptr);
  }

  override get pinned(): boolean {
    return true;
  }

  override get disposed(): boolean {
    return this.held.ptr === 0n;
  }

  /** The host pointer of the first byte; throws after dispose. */
  get ptr(): bigint {
    if (this.held.ptr === 0n) throw new InvalidArgumentError('tensor', 'the pinned tensor was disposed');
    return this.held.ptr;
  }

  /** Frees the pinned memory (waits for copies still using it: cudaFreeHost synchronizes); idempotent. */
  override dispose(): void {
    if (this.held.ptr === 0n) return;
    const ptr = this.held.ptr;
    this.held.ptr = 0n;
    registry.unregister(this);
    cuda().cudaFreeHost(ptr);
  }
}
