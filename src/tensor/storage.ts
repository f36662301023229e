/**
 * Where a tensor's bytes live. Host storage is a SharedArrayBuffer (thread ranks can
 * share it); device storage is a pointer from the stream-ordered allocator, freed
 * stream-ordered by dispose() or, as a safety net, when every view is garbage.
 */
import { cuda } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { currentDevice, currentStream } from './stream.ts';

/** Bytes on the host. */
export class HostStorage {
  readonly kind = 'host';
  readonly device = 'cpu';
  constructor(readonly buffer: SharedArrayBuffer, readonly byteOffset: number, readonly bytes: number) {}

  static allocate(bytes: number): HostStorage {
    return new HostStorage(new SharedArrayBuffer(Math.max(bytes, 0)), 0, bytes);
  }
}

interface DeviceHeld {
  ptr: bigint;
}

/**
 * Storages allocated while a stream capture is open become allocation nodes of the
 * graph: the graph owns them (they live as long as it and are reused by each replay),
 * so dispose() outside the capture leaves them alone. See src/parallel/graph.ts.
 */
let capturing: Set<DeviceStorage> | null = null;

/** Starts collecting storages allocated during a capture. */
export function beginGraphAllocations(): void {
  capturing = new Set();
}

/** Ends the collection; returns the storages the graph now owns (allocated, not freed, during capture). */
export function endGraphAllocations(): DeviceStorage[] {
  const owned = [...(capturing ?? [])];
  capturing = null;
  for (const s of owned) s.markGraphOwned();
  return owned;
}

// Safety net only (STYLE §7): storages dropped without dispose() are freed on the
// thread's current stream when the GC finds them.
const registry = new FinalizationRegistry<DeviceHeld>((held) => {
  if (held.ptr === 0n) return;
  try {
    cuda().cudaFreeAsync(held.ptr, currentStream().handle);
  } catch {
    // The context is gone (process exit after an abort): the driver reclaims it.
  }
});

/** Bytes on a CUDA device. */
export class DeviceStorage {
  readonly kind = 'device';
  readonly device: string;
  readonly ordinal: number;
  private readonly held: DeviceHeld;
  private graphOwned = false;

  private constructor(ordinal: number, ptr: bigint, readonly bytes: number) {
    this.ordinal = ordinal;
    this.device = `cuda:${ordinal}`;
    this.held = { ptr };
    if (ptr !== 0n) registry.register(this, this.held, this);
  }

  /** Allocates `bytes` on the current stream of the current device, which must be `ordinal`. */
  static allocate(ordinal: number, bytes: number): DeviceStorage {
    const current = currentDevice();
    if (current !== ordinal) {
      throw new InvalidArgumentError('device', `cuda:${ordinal} is not this thread's current device (cuda:${current}); one rank owns one device`);
    }
    if (bytes === 0) return new DeviceStorage(ordinal, 0n, 0);
    const out = new BigUint64Array(1);
    cuda().cudaMallocAsync(out, bytes, currentStream().handle);
    const storage = new DeviceStorage(ordinal, out[0], bytes);
    capturing?.add(storage);
    return storage;
  }

  /** @internal the graph that allocated this storage owns it now. */
  markGraphOwned(): void {
    this.graphOwned = true;
    registry.unregister(this);
  }

  /** @internal frees a graph-owned storage when its graph is disposed. */
  releaseFromGraph(stream: bigint): void {
    if (this.held.ptr === 0n) return;
    const ptr = this.held.ptr;
    this.held.ptr = 0n;
    cuda().cudaFreeAsync(ptr, stream);
  }

  /** The device pointer; throws after dispose. */
  get ptr(): bigint {
    if (this.held.ptr === 0n && this.bytes > 0) throw new InvalidArgumentError('tensor', 'the tensor was disposed');
    return this.held.ptr;
  }

  get disposed(): boolean {
    return this.held.ptr === 0n && this.bytes > 0;
  }

  /** Frees the memory stream-ordered on the current stream; idempotent. */
  dispose(): void {
    if (this.held.ptr === 0n || this.graphOwned) return;
    capturing?.delete(this); // freed inside the capture: a free node of the graph
    registry.unregister(this);
    const ptr = this.held.ptr;
    this.held.ptr = 0n;
    cuda().cudaFreeAsync(ptr, currentStream().handle);
  }
}

export type Storage = HostStorage | DeviceStorage;
