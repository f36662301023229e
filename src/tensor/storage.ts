/**
 * Where a tensor's bytes live. Host storage is a SharedArrayBuffer (thread ranks can
 * share it) or, for a download's result and pinned memory, an ArrayBuffer; device
 * storage is a pointer from the stream-ordered allocator (small blocks through a
 * per-stream cache), freed stream-ordered by dispose() or, as a safety net, when every
 * view is garbage.
 */
import { cuda } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { cacheOrFree, sizeClass, takeCached } from './block-cache.ts';
import { type Stream, currentDevice, currentStream } from './stream.ts';

/**
 * Bytes on the host: a SharedArrayBuffer, an ArrayBuffer that a download filled
 * ({@link HostStorage.forOverwrite}), or page-locked memory mapped as an ArrayBuffer
 * (PinnedHostStorage in ./pinned.ts).
 */
export class HostStorage {
  readonly kind = 'host';
  readonly device = 'cpu';
  constructor(
    readonly buffer: SharedArrayBuffer | ArrayBuffer,
    readonly byteOffset: number,
    readonly bytes: number,
  ) {}

  static allocate(bytes: number): HostStorage {
    return new HostStorage(new SharedArrayBuffer(Math.max(bytes, 0)), 0, bytes);
  }

  /**
   * Uninitialised bytes in a plain ArrayBuffer, for a download that writes every one of
   * them (`to('cpu')`). malloc hands back the warm memory of dropped buffers, where each
   * new SharedArrayBuffer's pages fault on first touch: at 16 MiB, several times the copy.
   */
  static forOverwrite(bytes: number): HostStorage {
    return new HostStorage(Buffer.allocUnsafeSlow(bytes).buffer, 0, bytes);
  }

  /** True for page-locked memory. */
  get pinned(): boolean {
    return false;
  }

  get disposed(): boolean {
    return false;
  }

  /** Host memory of the JS heap is the garbage collector's; pinned memory is freed here. */
  dispose(): void {}
}

/**
 * What the GC safety net frees: made when a storage is registered with it (trackLater),
 * so that a storage disposed soon after it was made (the hot loop's pattern) costs no
 * second object.
 */
interface DeviceHeld {
  ptr: bigint;
  release?: () => void;
}

/**
 * Storages allocated while a stream capture is open become allocation nodes of the
 * graph: the graph owns them (they live as long as it and are reused by each replay),
 * so dispose() outside the capture leaves them alone. See ./graph.ts.
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

// Safety net only (dispose() is the plan): storages dropped without dispose() are freed on the
// thread's current stream when the GC finds them.
const registry = new FinalizationRegistry<DeviceHeld>((held) => {
  try {
    if (held.release) held.release();
    else cuda().cudaFreeAsync(held.ptr, currentStream().handle);
  } catch {
    // The context is gone (process exit after an abort): the driver reclaims it.
  }
});

/**
 * The safety net is registered late: a new storage waits until the next one is made (or
 * the event loop's next turn) and is registered only if it is still alive then. A
 * collective's output disposed right after use, the hot loop's pattern, never reaches
 * the registry, whose register, unregister and later GC work cost ~0.5 µs per tensor;
 * and the storage looked at again is the one made just before, still in the CPU's cache
 * (a list of waiting storages, walked later, cost a cache miss per storage under a
 * native library that sweeps the caches, as NCCL's enqueue does).
 */
let waiting: DeviceStorage | null = null;
let flushScheduled = false;

function flushWaiting(): void {
  flushScheduled = false;
  const storage = waiting;
  waiting = null;
  storage?.registerIfLive();
}

function trackLater(storage: DeviceStorage): void {
  const previous = waiting;
  waiting = storage;
  previous?.registerIfLive();
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushWaiting).unref();
  }
}

/**
 * Where a device storage's memory came from, and so how it goes back:
 * - `pool`: cudaMallocAsync or the small-block cache; freed stream-ordered.
 * - `malloc`: cudaMalloc, which CUDA IPC can export (pool memory it cannot).
 * - `foreign`: another library's memory; its owner's callback runs on release.
 * - `ipc`: another process's memory opened from an IPC handle; closed on release.
 */
export type DeviceOrigin = 'pool' | 'malloc' | 'foreign' | 'ipc';

/** `cuda:N` per ordinal, made once (every collective's output names its device). */
const deviceNames: string[] = [];
function deviceName(ordinal: number): string {
  let name = deviceNames[ordinal];
  if (name === undefined) {
    name = `cuda:${ordinal}`;
    deviceNames[ordinal] = name;
  }
  return name;
}

/** Bytes on a CUDA device. */
export class DeviceStorage {
  readonly kind = 'device';
  readonly device: string;
  readonly ordinal: number;
  /** The device pointer; 0n once freed. */
  private address: bigint;
  /** Set for memory the pool does not own (foreign, IPC, cudaMalloc): how it goes back. */
  private readonly release: (() => void) | undefined;
  /** Owned by a CUDA graph: the graph frees it, never dispose() or the safety net. */
  private graphOwned = false;
  /** Registered with the GC safety net (see trackLater): what it would free. */
  private held: DeviceHeld | null = null;

  private constructor(
    ordinal: number,
    ptr: bigint,
    readonly bytes: number,
    /** The stream whose allocation made it (pool memory only): its blocks may take it back. */
    private readonly allocStream: Stream | null,
    readonly origin: DeviceOrigin = 'pool',
    release?: () => void,
  ) {
    this.ordinal = ordinal;
    this.device = deviceName(ordinal);
    this.address = ptr;
    this.release = release;
    if (ptr !== 0n) trackLater(this);
  }

  /**
   * A storage over `bytes` at `ptr` that the pool does not own: `release` runs once,
   * on the first dispose() or, as a safety net, when the storage is garbage.
   */
  static adopt(ordinal: number, ptr: bigint, bytes: number, origin: DeviceOrigin, release: () => void): DeviceStorage {
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      release();
    };
    return new DeviceStorage(ordinal, ptr, bytes, null, origin, once);
  }

  /** Allocates `bytes` on the current stream of the current device, which must be `ordinal`. */
  static allocate(ordinal: number, bytes: number): DeviceStorage {
    const current = currentDevice();
    if (current !== ordinal) {
      throw new InvalidArgumentError(
        'device',
        `cuda:${ordinal} is not this thread's current device (cuda:${current}); one rank owns one device`,
      );
    }
    if (bytes === 0) return new DeviceStorage(ordinal, 0n, 0, null);
    const stream = currentStream();
    const size = sizeClass(bytes);
    let ptr = capturing ? null : takeCached(stream, size);
    if (ptr === null) {
      const out = new BigUint64Array(1);
      cuda().cudaMallocAsync(out, size, stream.handle);
      ptr = out[0];
    }
    const storage = new DeviceStorage(ordinal, ptr, bytes, stream);
    capturing?.add(storage);
    return storage;
  }

  /** @internal the graph that allocated this storage owns it now. */
  markGraphOwned(): void {
    this.graphOwned = true;
    this.unregister();
  }

  /** @internal registers the GC safety net unless already freed or owned by a graph (see trackLater). */
  registerIfLive(): void {
    if (this.address === 0n || this.graphOwned || this.held !== null) return;
    this.held = { ptr: this.address, release: this.release };
    registry.register(this, this.held, this);
  }

  private unregister(): void {
    if (this.held === null) return;
    registry.unregister(this);
    this.held = null;
  }

  /** @internal frees a graph-owned storage when its graph is disposed. */
  releaseFromGraph(stream: bigint): void {
    if (this.address === 0n) return;
    const ptr = this.address;
    this.address = 0n;
    cuda().cudaFreeAsync(ptr, stream);
  }

  /** The device pointer; throws after dispose. */
  get ptr(): bigint {
    if (this.address === 0n && this.bytes > 0) throw new InvalidArgumentError('tensor', 'the tensor was disposed');
    return this.address;
  }

  get disposed(): boolean {
    return this.address === 0n && this.bytes > 0;
  }

  /** Frees the memory stream-ordered on the current stream; idempotent. */
  dispose(): void {
    if (this.address === 0n || this.graphOwned) return;
    capturing?.delete(this); // freed inside the capture: a free node of the graph
    this.unregister();
    const ptr = this.address;
    this.address = 0n;
    if (this.release) {
      this.release();
      return;
    }
    const stream = currentStream();
    // A block made on another stream (a pipe's receive, freed by its user) goes back to
    // the pool: cached here it would serve only this stream, and the stream that
    // allocates such blocks would grow the pool on every allocation.
    if (stream === this.allocStream) cacheOrFree(ptr, sizeClass(this.bytes), stream, capturing !== null);
    else cuda().cudaFreeAsync(ptr, stream.handle);
  }
}

export type Storage = HostStorage | DeviceStorage;
