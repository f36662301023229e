/**
 * Memory gpugroup does not allocate from its pool: another library's device pointer,
 * another process's allocation opened through CUDA IPC, and IPC-exportable
 * allocations of our own.
 *
 * CUDA IPC exports whole cudaMalloc allocations (cudaIpcGetMemHandle); memory from
 * the stream-ordered pool (cudaMallocAsync), which every other gpugroup tensor uses,
 * is not exportable that way. So a tensor meant to cross processes is allocated with
 * `{ ipc: true }` (cudaMalloc); exporting a pool tensor is refused with an error that
 * says so rather than silently copied (a copy would not be shared: writes on either
 * side would be lost). A handle names the allocation's base, and a tensor may start
 * inside it (a view, or a block torch's caching allocator carved from a larger
 * segment), so a handle travels with the byte offset of the tensor's first element:
 * the pair torch's `UntypedStorage._share_cuda_()` also returns.
 */
import { cuda, cudaDriver, Flags } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { DeviceStorage } from './storage.ts';
import { currentDevice, currentStream } from './stream.ts';

/** Bytes of a cudaIpcMemHandle_t. */
export const IPC_HANDLE_BYTES = 64;

/**
 * A CUDA IPC handle and where a tensor starts inside the exported allocation; plain
 * data (structured-cloneable, JSON-serialisable), so it can go to another process.
 */
export interface IpcHandle {
  /** The 64-byte cudaIpcMemHandle_t as 128 lowercase hex digits. */
  handle: string;
  /** Byte offset of the tensor's first element from the allocation's base. */
  offset: number;
  /** Bytes of the tensor from `offset` (informative; checked against the shape on import). */
  bytes?: number;
}

function requireCurrentDevice(ordinal: number): void {
  const current = currentDevice();
  if (current !== ordinal) {
    throw new InvalidArgumentError(
      'device',
      `cuda:${ordinal} is not this thread's current device (cuda:${current}); one rank owns one device`,
    );
  }
}

/** An IPC-exportable allocation (cudaMalloc), freed with cudaFree on dispose. */
export function allocateIpcCapable(ordinal: number, bytes: number): DeviceStorage {
  requireCurrentDevice(ordinal);
  const out = new BigUint64Array(1);
  // cudaMalloc of 0 bytes gives no pointer; 1 byte keeps the storage exportable.
  cuda().cudaMalloc(out, Math.max(bytes, 1));
  const ptr = out[0];
  // cudaFree waits for the device, so work still queued on the buffer finishes first.
  return DeviceStorage.adopt(ordinal, ptr, bytes, 'malloc', () => cuda().cudaFree(ptr));
}

/** A storage over another library's memory; `onDispose` runs once when it is released. */
export function adoptDevicePointer(ordinal: number, ptr: bigint, bytes: number, onDispose?: () => void): DeviceStorage {
  return DeviceStorage.adopt(ordinal, ptr, bytes, 'foreign', () => onDispose?.());
}

/** Parses a handle's bytes from hex or a Uint8Array; InvalidArgumentError naming `handle` otherwise. */
export function ipcHandleBytes(handle: unknown): Uint8Array {
  if (handle instanceof Uint8Array) {
    if (handle.length !== IPC_HANDLE_BYTES)
      throw new InvalidArgumentError('handle', `expected ${IPC_HANDLE_BYTES} bytes, got ${handle.length}`);
    return handle;
  }
  if (typeof handle !== 'string' || !/^[0-9a-fA-F]*$/.test(handle) || handle.length !== 2 * IPC_HANDLE_BYTES)
    throw new InvalidArgumentError(
      'handle',
      `expected ${IPC_HANDLE_BYTES} bytes as ${2 * IPC_HANDLE_BYTES} hex digits or a Uint8Array`,
    );
  return Uint8Array.from(Buffer.from(handle, 'hex'));
}

/**
 * Exports the allocation that holds `storage` through CUDA IPC. `byteOffset` is the
 * tensor's first byte inside the storage. Pool memory is refused (see the file header).
 */
export function exportIpc(storage: DeviceStorage, byteOffset: number, bytes: number): IpcHandle {
  if (storage.origin === 'pool') {
    throw new InvalidArgumentError(
      'tensor',
      'its memory comes from the stream-ordered pool (cudaMallocAsync), which CUDA IPC cannot export; ' +
        'allocate it with Tensor.empty(shape, { device, ipc: true }) (or zeros/full) and copy into it',
    );
  }
  if (storage.origin === 'ipc')
    throw new InvalidArgumentError('tensor', 'it was opened from another process’s IPC handle; export the original');
  const ptr = storage.ptr + BigInt(byteOffset);
  let base = storage.ptr;
  if (storage.origin === 'foreign') {
    // Another library's pointer may sit inside a larger allocation (torch's caching
    // allocator carves blocks from cudaMalloc'd segments): the handle names the base.
    const range = cudaDriver()?.cuMemGetAddressRange_v2;
    if (!range)
      throw new InvalidArgumentError('tensor', 'exporting foreign memory needs libcuda (cuMemGetAddressRange_v2)');
    const baseOut = new BigUint64Array(1);
    range(baseOut, new BigUint64Array(1), ptr);
    base = baseOut[0];
  }
  const handle = new Uint8Array(IPC_HANDLE_BYTES);
  cuda().cudaIpcGetMemHandle(handle, base);
  return { handle: Buffer.from(handle).toString('hex'), offset: Number(ptr - base), bytes };
}

/**
 * Allocations of other processes opened in this thread, by device and handle, with how
 * many storages use each: CUDA maps an allocation once per process (opening a handle
 * that is already open fails), so a second tensor from the same allocation shares the
 * mapping, and the last one to go closes it.
 */
const opened = new Map<string, { base: bigint; users: number }>();

/**
 * Opens another process's allocation (cudaIpcOpenMemHandle, peer access enabled lazily
 * as torch does) and returns a storage over `bytes` from `offset`; released with
 * cudaIpcCloseMemHandle, after the current stream's work on it, by the last storage
 * over that allocation.
 */
export function openIpc(ordinal: number, handle: Uint8Array, offset: number, bytes: number): DeviceStorage {
  requireCurrentDevice(ordinal);
  const key = `${ordinal}:${Buffer.from(handle).toString('hex')}`;
  let mapping = opened.get(key);
  if (!mapping) {
    const out = new BigUint64Array(1);
    cuda().cudaIpcOpenMemHandle(out, { reserved: handle }, Flags.ipcLazyEnablePeerAccess);
    mapping = { base: out[0], users: 0 };
    opened.set(key, mapping);
  }
  mapping.users++;
  const { base } = mapping;
  return DeviceStorage.adopt(ordinal, base + BigInt(offset), bytes, 'ipc', () => {
    // Closing unmaps the memory: work queued on it must be done first.
    cuda().cudaStreamSynchronize(currentStream().handle);
    if (--mapping.users > 0) return;
    opened.delete(key);
    cuda().cudaIpcCloseMemHandle(base);
  });
}
