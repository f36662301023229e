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
    return new DeviceStorage(ordinal, out[0], bytes);
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
    if (this.held.ptr === 0n) return;
    registry.unregister(this);
    const ptr = this.held.ptr;
    this.held.ptr = 0n;
    cuda().cudaFreeAsync(ptr, currentStream().handle);
  }
}

export type Storage = HostStorage | DeviceStorage;
