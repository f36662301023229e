/**
 * `Tensor`: dtype, shape, strides and a storage on the host or on one
 * CUDA device. Views (reshape of contiguous data, narrow, movedim) share storage;
 * `contiguous`, `clone` and `to` copy. Device work is enqueued on the current stream.
 */
import { MemcpyKind, cuda, cudaDriver } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { copyDeviceStrided, copyHostStrided, contiguousStrides, type Layout } from './copy.ts';
import { decodeValues, dtypeInfo, encodeValues, type DType, type DTypeInfo, type StorageArray } from './dtype.ts';
import {
  adoptDevicePointer,
  allocateIpcCapable,
  exportIpc,
  type IpcHandle,
  ipcHandleBytes,
  openIpc,
} from './foreign.ts';
import { PinnedHostStorage } from './pinned.ts';
import { type DeferredDrain, type Drain, downloadAsync, downloadSync, uploadAsync, uploadSync } from './staging.ts';
import { DeviceStorage, HostStorage, type Storage } from './storage.ts';
import { currentStream } from './stream.ts';
import { allocValues, readValues, storageView, writeValues } from './values.ts';
import { checkScalar, checkValues } from './value-range.ts';

/** Options of the factory functions. */
export interface TensorOptions {
  dtype?: DType;
  /** `cpu` (default) or `cuda:N`. */
  device?: string;
  /**
   * Device only: allocate with cudaMalloc so that {@link Tensor.ipcHandle} can export
   * the memory to another process (pool memory cannot be exported). Not for use inside
   * a graph capture. Honoured by `empty`, `zeros` and `full`.
   */
  ipc?: boolean;
  /**
   * A host tensor in page-locked memory (torch's `pin_memory`): copies to and from a
   * device are one stream-ordered cudaMemcpyAsync, enqueued without waiting. Like
   * torch's `non_blocking=True`, the host side must not be written (after an upload) or
   * read (after a download) until the stream reaches the copy:
   * `await currentStream().synchronize()`. Needs the CUDA runtime and a device.
   */
  pinned?: boolean;
}

/** Options of {@link Tensor.fromDevicePointer}. */
export interface ForeignOptions {
  /** Called once when the storage is released (the first dispose() of the tensor or a view of it, or GC). */
  onDispose?: () => void;
}

/** Values a user sees: float16/bfloat16/fp8 as Float32Array, int64 as BigInt64Array. */
export type ValueArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

type NestedNumbers = number | bigint | NestedNumbers[];

/** Parsed 'cuda:N' strings (every output tensor of a collective parses one). */
const ordinals = new Map<string, number>();

/** Parses `cpu` / `cuda:N`; anything else is an InvalidArgumentError naming `device`. */
export function parseDevice(device: string): number | null {
  if (device === 'cpu') return null;
  const known = ordinals.get(device);
  if (known !== undefined) return known;
  const m = /^cuda:(\d+)$/.exec(device);
  if (!m) throw new InvalidArgumentError('device', `expected 'cpu' or 'cuda:N', got '${device}'`);
  const ordinal = Number(m[1]);
  ordinals.set(device, ordinal);
  return ordinal;
}

/**
 * `Tensor.full` on a device as one driver memset (cuMemsetD32Async) of the value's bit
 * pattern, repeated to 32 bits for 1- and 2-byte dtypes; 8-byte values qualify when
 * their halves match. Stream-ordered, no host buffer. Null when the pattern or the size
 * does not fit 32-bit words, or libcuda is not loadable: the caller copies from the host.
 */
function fillOnDevice(
  shape: readonly number[],
  dtype: DType,
  one: StorageArray,
  device: string,
  ipc?: boolean,
): Tensor | null {
  const bytes = new Uint8Array(one.buffer, one.byteOffset, one.byteLength);
  const word = new Uint8Array(4);
  for (let i = 0; i < 4; i++) word[i] = bytes[i % bytes.length];
  if (bytes.length === 8 && bytes.some((b, i) => b !== word[i % 4])) return null;
  const memset = cudaDriver();
  if (!memset) return null;
  const t = Tensor.empty(shape, { dtype, device, ipc });
  if (t.nbytes % 4 !== 0) {
    t.dispose();
    return null;
  }
  if (t.nbytes > 0)
    memset.cuMemsetD32Async(t.dataPtr, new Uint32Array(word.buffer)[0], t.nbytes / 4, currentStream().handle);
  return t;
}

function checkShape(shape: readonly number[], argument = 'shape'): number {
  if (!Array.isArray(shape)) throw new InvalidArgumentError(argument, `expected an array of dims, got ${typeof shape}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new InvalidArgumentError(argument, `dims must be non-negative integers, got [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

function normDim(dim: number, ndim: number, argument = 'dim'): number {
  if (!Number.isInteger(dim) || dim < -ndim || dim >= ndim) {
    throw new InvalidArgumentError(argument, `dim ${dim} is out of range for a tensor of ${ndim} dims`);
  }
  return dim < 0 ? dim + ndim : dim;
}

/** An n-dimensional array on the host or on a CUDA device. */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Strides in elements. */
  readonly strides: readonly number[];
  /** Offset of the first element in the storage, in elements. */
  readonly offset: number;
  readonly storage: Storage;
  readonly numel: number;
  private readonly info: DTypeInfo;

  /** Low-level constructor; prefer the factory functions. */
  constructor(storage: Storage, dtype: DType, shape: readonly number[], strides?: readonly number[], offset = 0) {
    this.info = dtypeInfo(dtype);
    this.storage = storage;
    this.dtype = dtype;
    this.shape = shape;
    this.strides = strides ?? contiguousStrides(shape);
    this.offset = offset;
    let n = 1;
    for (const d of shape) n *= d;
    this.numel = n;
  }

  /** `cpu` or `cuda:N`. */
  get device(): string {
    return this.storage.device;
  }

  get isCuda(): boolean {
    return this.storage.kind === 'device';
  }

  get itemsize(): number {
    return this.info.bytes;
  }

  get nbytes(): number {
    return this.numel * this.info.bytes;
  }

  get isContiguous(): boolean {
    let expected = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expected) return false;
      expected *= this.shape[i];
    }
    return true;
  }

  /** Device pointer of the first element (device tensors only). */
  get dataPtr(): bigint {
    if (this.storage.kind !== 'device')
      throw new InvalidArgumentError('tensor', 'dataPtr is for device tensors; this one is on cpu');
    return this.offset === 0 ? this.storage.ptr : this.storage.ptr + BigInt(this.offset * this.info.bytes);
  }

  /** Zero-copy typed array (storage type) over a contiguous host tensor's elements. */
  hostView(): StorageArray {
    if (this.storage.kind !== 'host')
      throw new InvalidArgumentError('tensor', `hostView is for host tensors; this one is on ${this.device}`);
    if (!this.isContiguous)
      throw new InvalidArgumentError('tensor', 'hostView needs a contiguous tensor; call contiguous() first');
    const s = this.storage;
    if (s.disposed) throw new InvalidArgumentError('tensor', 'the pinned tensor was disposed');
    return new this.info.storage(s.buffer, s.byteOffset + this.offset * this.info.bytes, this.numel);
  }

  /** An uninitialized (host: zeroed) tensor. */
  static empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? 'float32';
    const info = dtypeInfo(dtype);
    const n = checkShape(shape);
    const ordinal = parseDevice(opts.device ?? 'cpu');
    const bytes = n * info.bytes;
    if (opts.ipc && ordinal === null)
      throw new InvalidArgumentError('ipc', 'CUDA IPC memory is device memory; pass a cuda:N device');
    if (opts.pinned && ordinal !== null)
      throw new InvalidArgumentError('pinned', `only host tensors can be pinned, not ${opts.device} ones`);
    const storage =
      ordinal !== null
        ? opts.ipc
          ? allocateIpcCapable(ordinal, bytes)
          : DeviceStorage.allocate(ordinal, bytes)
        : opts.pinned
          ? PinnedHostStorage.allocatePinned(bytes)
          : HostStorage.allocate(bytes);
    return new Tensor(storage, dtype, [...shape]);
  }

  /**
   * A tensor over device memory another library owns (a torch tensor's data_ptr(),
   * a CuPy array, …): nothing is copied and gpugroup never frees it; `onDispose` is
   * called once when the storage is released. The caller keeps the memory alive until
   * then and orders its own work against the current stream.
   */
  static fromDevicePointer(
    ptr: bigint,
    shape: readonly number[],
    dtype: DType,
    device: string,
    opts: ForeignOptions = {},
  ): Tensor {
    if (typeof ptr !== 'bigint' || ptr <= 0n)
      throw new InvalidArgumentError('ptr', `expected a non-zero device pointer as a bigint, got ${String(ptr)}`);
    const n = checkShape(shape);
    const info = dtypeInfo(dtype);
    const ordinal = parseDevice(device);
    if (ordinal === null) throw new InvalidArgumentError('device', 'a device pointer needs a cuda:N device, got cpu');
    if (opts.onDispose !== undefined && typeof opts.onDispose !== 'function')
      throw new InvalidArgumentError('onDispose', `expected a function, got ${typeof opts.onDispose}`);
    return new Tensor(adoptDevicePointer(ordinal, ptr, n * info.bytes, opts.onDispose), dtype, [...shape]);
  }

  /**
   * Opens a tensor another process exported (its {@link Tensor.ipcHandle}, or torch's
   * `_share_cuda_()` handle and offset): the same memory, no copy. Tensors opened from
   * one allocation share its mapping, closed (cudaIpcCloseMemHandle) when the last is
   * disposed. A process cannot open its own handles (CUDA).
   */
  static fromIpcHandle(
    handle: IpcHandle | { handle: string | Uint8Array; offset: number },
    shape: readonly number[],
    dtype: DType,
    device: string,
  ): Tensor {
    if (typeof handle !== 'object' || handle === null)
      throw new InvalidArgumentError('handle', 'expected { handle, offset }');
    const bytes = ipcHandleBytes(handle.handle);
    const offset = handle.offset;
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new InvalidArgumentError('offset', `expected a non-negative byte offset, got ${String(offset)}`);
    const n = checkShape(shape);
    const info = dtypeInfo(dtype);
    const ordinal = parseDevice(device);
    if (ordinal === null) throw new InvalidArgumentError('device', 'an IPC handle opens on a cuda:N device, got cpu');
    const size = (handle as IpcHandle).bytes;
    if (size !== undefined && n * info.bytes > size)
      throw new InvalidArgumentError('shape', `${n * info.bytes} bytes of ${dtype} exceed the ${size} exported`);
    return new Tensor(openIpc(ordinal, bytes, offset, n * info.bytes), dtype, [...shape]);
  }

  static zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, opts);
    if (t.isCuda && t.nbytes > 0) cuda().cudaMemsetAsync(t.dataPtr, 0, t.nbytes, currentStream().handle);
    return t;
  }

  /**
   * A tensor of `shape` filled with `value`. A value the dtype cannot hold (1000 in int8,
   * 1e6 in float16, 1.5 in int32, NaN in an integer dtype) is an InvalidArgumentError, as
   * torch.full refuses it.
   */
  static full(shape: readonly number[], value: number | bigint, opts: TensorOptions = {}): Tensor {
    const n = checkShape(shape);
    const dtype = opts.dtype ?? 'float32';
    const info = dtypeInfo(dtype);
    checkScalar(dtype, value, 'value');
    // Encode the value once, then fill the storage with its bits.
    const one = new info.storage(1);
    if (info.encoded) encodeValues(dtype, [Number(value)], one as Uint16Array | Uint8Array);
    else if (one instanceof BigInt64Array) one[0] = BigInt(value);
    else (one as Float64Array)[0] = Number(value);
    const device = opts.device ?? 'cpu';
    parseDevice(device);
    if (device !== 'cpu') {
      const filled = fillOnDevice(shape, dtype, one, device, opts.ipc);
      if (filled) return filled;
    }
    const host = HostStorage.allocate(n * info.bytes);
    (new info.storage(host.buffer, 0, n) as Float64Array).fill((one as Float64Array)[0]);
    const t = new Tensor(host, dtype, [...shape]);
    if (device === 'cpu') return t;
    if (!opts.ipc) return t.to(device);
    const out = Tensor.empty(shape, { dtype, device, ipc: true });
    if (n > 0)
      cuda().cudaMemcpyAsync(out.dataPtr, t.hostView(), t.nbytes, MemcpyKind.HostToDevice, currentStream().handle);
    return out;
  }

  /**
   * Values from `start` (default 0) up to, not including, `end`, `step` apart (default 1),
   * as torch.arange: `arange(end, opts?)`, `arange(start, end, opts?)`,
   * `arange(start, end, step, opts?)`. The default dtype is torch's: int64 when start, end
   * and step are all integers, else float32 (JavaScript cannot tell `8.0` from `8`: pass
   * `{ dtype: 'float32' }` for floats over integer bounds). A non-finite or non-number
   * argument, a zero step, a step pointing away from `end`, a fraction with an integer
   * dtype, or a value the dtype cannot hold is an InvalidArgumentError naming it.
   */
  static arange(end: number, opts?: TensorOptions): Tensor;
  static arange(start: number, end: number, opts?: TensorOptions): Tensor;
  static arange(start: number, end: number, step: number, opts?: TensorOptions): Tensor;
  static arange(...args: unknown[]): Tensor {
    const last = args[args.length - 1];
    const opts = (args.length > 1 && (last === undefined || typeof last === 'object') ? args.pop() : undefined) ?? {};
    if (typeof opts !== 'object' || Array.isArray(opts))
      throw new InvalidArgumentError('opts', `expected an options object, got ${JSON.stringify(opts)}`);
    const names = [['end'], ['start', 'end'], ['start', 'end', 'step']][args.length - 1];
    if (!names)
      throw new InvalidArgumentError(
        'arange',
        `expected arange(end), arange(start, end) or arange(start, end, step), each with optional options; got ${args.length} numbers`,
      );
    names.forEach((name, i) => {
      const v = args[i];
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new InvalidArgumentError(name, `expected a finite number, got ${typeof v === 'number' ? v : typeof v}`);
    });
    const [start, end, step] =
      args.length === 1
        ? [0, args[0] as number, 1]
        : [args[0] as number, args[1] as number, (args[2] as number | undefined) ?? 1];
    if (step === 0) throw new InvalidArgumentError('step', 'must be non-zero');
    if ((end - start) * step < 0)
      throw new InvalidArgumentError('step', `${step} points away from end ${end} (start ${start})`);
    const { dtype: given, device = 'cpu' } = opts as TensorOptions;
    const integral = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
    const dtype = given ?? (integral ? 'int64' : 'float32');
    const info = dtypeInfo(dtype);
    if ((dtype.startsWith('int') || dtype === 'uint8') && !integral)
      throw new InvalidArgumentError(
        'dtype',
        `${dtype} holds integers only; arange(${start}, ${end}, ${step}) has fractions (pass a floating dtype)`,
      );
    parseDevice(device);
    const n = Math.ceil((end - start) / step);
    if (n > 0) {
      checkScalar(dtype, start, 'start');
      checkScalar(dtype, start + (n - 1) * step, 'end');
    }
    const t = Tensor.empty([n], { dtype });
    const view = t.hostView();
    if (view instanceof BigInt64Array) for (let i = 0; i < n; i++) view[i] = BigInt(start + i * step);
    else if (info.encoded)
      encodeValues(
        dtype,
        Float64Array.from({ length: n }, (_, i) => start + i * step),
        view as Uint16Array,
      );
    else for (let i = 0; i < n; i++) (view as Float64Array)[i] = start + i * step;
    return device === 'cpu' ? t : t.to(device);
  }

  /** A host tensor over existing shared memory (the communicators use it). */
  static fromShared(buffer: SharedArrayBuffer, byteOffset: number, shape: readonly number[], dtype: DType): Tensor {
    const n = checkShape(shape);
    const bytes = n * dtypeInfo(dtype).bytes;
    if (byteOffset < 0 || byteOffset + bytes > buffer.byteLength)
      throw new InvalidArgumentError(
        'byteOffset',
        `${bytes} bytes at ${byteOffset} overrun a ${buffer.byteLength}-byte buffer`,
      );
    return new Tensor(new HostStorage(buffer, byteOffset, bytes), dtype, [...shape]);
  }

  /**
   * From numbers (nested arrays: shape inferred), bigints or a typed array (dtype
   * inferred: Float32Array → float32, Float64Array → float64, Int32Array → int32,
   * BigInt64Array → int64, Int8Array → int8, Uint8Array → uint8; numbers → float32).
   */
  static fromArray(
    data: ArrayLike<number | bigint> | NestedNumbers[],
    opts: TensorOptions & { shape?: readonly number[] } = {},
  ): Tensor {
    const { flat, shape: inferred } = flatten(data);
    const dtype = opts.dtype ?? inferDtype(data);
    const info = dtypeInfo(dtype);
    checkValues(dtype, flat, 'data');
    const shape = opts.shape ? [...opts.shape] : inferred;
    const n = checkShape(shape);
    if (n !== flat.length)
      throw new InvalidArgumentError(
        'shape',
        `shape [${shape.join(', ')}] holds ${n} elements but the data has ${flat.length}`,
      );
    if (opts.device && opts.device !== 'cpu') {
      // Straight from the values into pinned staging: no host tensor in between.
      const t = Tensor.empty(shape, { dtype, device: opts.device, pinned: opts.pinned });
      // A typed array that holds the stored bits already is copied as bytes (memcpy).
      const asStored = !info.encoded && flat instanceof info.storage;
      uploadSync(
        t.dataPtr,
        t.nbytes,
        asStored
          ? new Uint8Array(flat.buffer, flat.byteOffset, t.nbytes)
          : (offset, out) => {
              const start = offset / info.bytes;
              writeValues(dtype, flat, start, start + out.byteLength / info.bytes, storageView(dtype, out));
            },
      );
      return t;
    }
    const t = Tensor.empty(shape, { dtype, pinned: opts.pinned });
    writeValues(dtype, flat, 0, n, t.hostView());
    return t;
  }

  /** Host copy of the values in row-major order (float16/bfloat16/fp8 as Float32Array). */
  async toArray(timeoutMs = 120_000): Promise<ValueArray> {
    let bits: StorageArray;
    if (this.storage.kind === 'host') {
      bits = this.isContiguous ? this.hostView().slice() : (this.contiguous().hostView() as StorageArray);
    } else {
      // Through pinned staging, piece by piece as the pieces arrive, decoding on the way;
      // the array is allocated while the first piece is in flight.
      const src = this.contiguous();
      let out = null as StorageArray | null;
      const make = (): Drain => {
        const values = allocValues(this.dtype, this.numel);
        out = values;
        // Plain dtypes land as bytes (memcpy, large pieces in parallel slices); encoded ones decode.
        return this.info.encoded
          ? (offset, data) => readValues(this.dtype, data, values, offset / this.info.bytes)
          : new Uint8Array(values.buffer, values.byteOffset, src.nbytes);
      };
      try {
        await downloadAsync(src.dataPtr, src.nbytes, { make }, timeoutMs);
      } finally {
        if (src !== this) src.dispose();
      }
      return (out ?? allocValues(this.dtype, 0)) as ValueArray;
    }
    return this.info.encoded ? decodeValues(this.dtype, bits as Uint16Array | Uint8Array) : (bits as ValueArray);
  }

  /** Same data, new shape (one dim may be -1); a view when contiguous, else a copy (like torch). */
  reshape(shape: readonly number[]): Tensor {
    if (!Array.isArray(shape))
      throw new InvalidArgumentError('shape', `expected an array of dims, got ${typeof shape}`);
    const inferredAt = shape.indexOf(-1);
    if (shape.filter((d) => d === -1).length > 1) throw new InvalidArgumentError('shape', 'only one dim can be -1');
    const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
    const resolved = [...shape];
    if (inferredAt >= 0) {
      if (known === 0 || this.numel % known !== 0)
        throw new InvalidArgumentError('shape', `cannot infer -1 in [${shape.join(', ')}] for ${this.numel} elements`);
      resolved[inferredAt] = this.numel / known;
    }
    const n = checkShape(resolved);
    if (n !== this.numel)
      throw new InvalidArgumentError('shape', `shape [${shape.join(', ')}] is invalid for ${this.numel} elements`);
    const base = this.isContiguous ? this : this.contiguous();
    return new Tensor(base.storage, this.dtype, resolved, undefined, base.offset);
  }

  /** A view of `length` slices of `dim` from `start`. */
  narrow(dim: number, start: number, length: number): Tensor {
    const d = normDim(dim, this.shape.length);
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(length) ||
      start < 0 ||
      length < 0 ||
      start + length > this.shape[d]
    ) {
      throw new InvalidArgumentError(
        'narrow',
        `start ${start} + length ${length} exceeds dim ${d} of size ${this.shape[d]}`,
      );
    }
    const shape = [...this.shape];
    shape[d] = length;
    return new Tensor(this.storage, this.dtype, shape, this.strides, this.offset + start * this.strides[d]);
  }

  /** A view with dims `source` moved to positions `destination` (ints or arrays, like torch). */
  movedim(source: number | number[], destination: number | number[]): Tensor {
    const n = this.shape.length;
    const src = (Array.isArray(source) ? source : [source]).map((d) => normDim(d, n, 'source'));
    const dst = (Array.isArray(destination) ? destination : [destination]).map((d) => normDim(d, n, 'destination'));
    if (src.length !== dst.length)
      throw new InvalidArgumentError('destination', `needs as many dims as source (${src.length}), got ${dst.length}`);
    if (new Set(src).size !== src.length || new Set(dst).size !== dst.length)
      throw new InvalidArgumentError('source', 'repeated dim');
    const order = new Array<number>(n).fill(-1);
    for (let i = 0; i < src.length; i++) order[dst[i]] = src[i];
    const rest = Array.from({ length: n }, (_, i) => i).filter((i) => !src.includes(i));
    for (let i = 0, r = 0; i < n; i++) if (order[i] < 0) order[i] = rest[r++];
    return new Tensor(
      this.storage,
      this.dtype,
      order.map((i) => this.shape[i]),
      order.map((i) => this.strides[i]),
      this.offset,
    );
  }

  /** This tensor when contiguous, else a contiguous copy on the same device. */
  contiguous(): Tensor {
    if (this.isContiguous) return this;
    const out = Tensor.empty(this.shape, { dtype: this.dtype, device: this.device });
    this.copyInto(out);
    return out;
  }

  /** A contiguous copy with its own storage. */
  clone(): Tensor {
    const out = Tensor.empty(this.shape, { dtype: this.dtype, device: this.device });
    this.copyInto(out);
    return out;
  }

  /**
   * A copy on `device` (`cpu` or `cuda:N`); the same device gives a clone. Host → device
   * returns once the values are in pinned staging or on their way (the source may change
   * right after); device → host waits for the copy (use {@link toAsync} or `toArray()`
   * to keep the event loop free). A pinned source moves as one stream-ordered copy (see
   * `TensorOptions.pinned`).
   */
  to(device: string): Tensor {
    parseDevice(device);
    if (device === this.device) return this.clone();
    if (device !== 'cpu') return Tensor.empty(this.shape, { dtype: this.dtype, device }).copyFrom(this);
    const src = this.contiguous();
    const dst = new HostDestination(this);
    try {
      downloadSync(src.dataPtr, src.nbytes, dst, 120_000);
    } finally {
      if (src !== this) src.dispose();
    }
    return dst.tensor();
  }

  /**
   * {@link to} that yields to the event loop between staged pieces (about every
   * millisecond of host work), for large copies on an actor that must stay responsive.
   */
  async toAsync(device: string, timeoutMs = 120_000): Promise<Tensor> {
    parseDevice(device);
    if (device === this.device) return this.clone();
    if (device === 'cpu') {
      const src = this.contiguous();
      const dst = new HostDestination(this);
      try {
        await downloadAsync(src.dataPtr, src.nbytes, dst, timeoutMs);
      } finally {
        if (src !== this) src.dispose(); // stream-ordered: after the copies that read it
      }
      return dst.tensor();
    }
    const out = Tensor.empty(this.shape, { dtype: this.dtype, device });
    await copyAcross(out, this, true, timeoutMs);
    return out;
  }

  /**
   * A CUDA IPC handle for this tensor's memory, for {@link Tensor.fromIpcHandle} (or
   * cudaIpcOpenMemHandle) in another process on the same machine: plain data, send it
   * any way. The tensor must be contiguous and on a device, allocated with
   * `{ ipc: true }` or adopted from another library's cudaMalloc'd memory; pool memory
   * is refused with an error saying so. The exporter keeps the tensor alive while
   * others use it.
   */
  ipcHandle(): IpcHandle {
    if (this.storage.kind !== 'device')
      throw new InvalidArgumentError('tensor', 'CUDA IPC exports device memory; this tensor is on cpu');
    if (!this.isContiguous)
      throw new InvalidArgumentError('tensor', 'ipcHandle needs a contiguous tensor (the receiver gets shape only)');
    return exportIpc(this.storage, this.offset * this.info.bytes, this.nbytes);
  }

  /**
   * Copies `src`'s values into this tensor (torch's `copy_`): same shape and dtype; this
   * tensor contiguous; host ↔ the current device, or within one device. Returns this.
   * Device work is stream-ordered; a copy into a pageable host tensor waits for it.
   */
  copyFrom(src: Tensor): this {
    if (!(src instanceof Tensor)) throw new InvalidArgumentError('src', 'expected a Tensor');
    if (src.dtype !== this.dtype || !sameShape(src.shape, this.shape))
      throw new InvalidArgumentError(
        'src',
        `expected ${this.dtype} [${this.shape.join(', ')}], got ${src.dtype} [${src.shape.join(', ')}]`,
      );
    if (!this.isContiguous) throw new InvalidArgumentError('tensor', 'copyFrom needs a contiguous destination');
    if (src.device === this.device) src.copyInto(this);
    else void copyAcross(this, src, false, 120_000);
    return this;
  }

  /** A copy of this host tensor in page-locked memory (torch's `pin_memory()`); this one when already pinned. */
  pin(): Tensor {
    if (this.storage.kind !== 'host')
      throw new InvalidArgumentError('tensor', `only host tensors can be pinned; this one is on ${this.device}`);
    if (this.storage.pinned) return this;
    const out = Tensor.empty(this.shape, { dtype: this.dtype, pinned: true });
    this.copyInto(out);
    return out;
  }

  /** True for a host tensor in page-locked memory. */
  get isPinned(): boolean {
    return this.storage.kind === 'host' && this.storage.pinned;
  }

  /**
   * Frees device memory now (stream-ordered), and pinned host memory now; idempotent.
   * Views of the same storage (and typed arrays over pinned memory) become invalid.
   */
  dispose(): void {
    this.storage.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device})`;
  }

  private layout(): Layout {
    return { shape: this.shape, strides: this.strides, offset: this.offset };
  }

  /** Copies the values of this view into the contiguous `out` (same device, shape, dtype). */
  private copyInto(out: Tensor): void {
    if (this.numel === 0) return;
    if (this.storage.kind === 'host') {
      const s = this.storage;
      const all = new this.info.storage(s.buffer, s.byteOffset, s.bytes / this.info.bytes);
      copyHostStrided(all, this.layout(), out.hostView());
    } else {
      copyDeviceStrided(this.storage.ptr, this.layout(), out.dataPtr, this.info.bytes, currentStream().handle);
    }
  }
}

/** True when two shapes have the same dims. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The host tensor a download from a device tensor lands in, allocated while the first
 * piece of the copy is in flight, over memory that the copy overwrites whole
 * ({@link HostStorage.forOverwrite}).
 */
class HostDestination implements DeferredDrain {
  private made: Tensor | null = null;
  constructor(private readonly like: Tensor) {}

  readonly make = (): Drain => {
    this.made = this.build();
    return hostBytes(this.made);
  };

  /** The host tensor (made now when the copy had no bytes). */
  tensor(): Tensor {
    return this.made ?? this.build();
  }

  private build(): Tensor {
    const { shape, dtype, nbytes } = this.like;
    return new Tensor(HostStorage.forOverwrite(nbytes), dtype, [...shape]);
  }
}

/** Bytes of a contiguous host tensor. */
function hostBytes(t: Tensor): Uint8Array {
  const v = t.hostView();
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Host ↔ device copy of `src` into the contiguous `dst` (same shape and dtype). Pinned
 * host memory: one stream-ordered cudaMemcpyAsync. Pageable: through pinned staging,
 * synchronously or (`async`, uploads) yielding between pieces. Resolves once the copy may be
 * relied on by the host (pageable) or is enqueued (pinned, device destinations).
 */
function copyAcross(dst: Tensor, src: Tensor, async: boolean, timeoutMs: number): Promise<void> {
  if (src.isCuda && dst.isCuda)
    throw new InvalidArgumentError(
      'device',
      `cannot copy ${src.device} → ${dst.device} here: one rank owns one device`,
    );
  const from = src.contiguous();
  try {
    if (from.nbytes === 0) return Promise.resolve();
    const stream = currentStream().handle;
    if (dst.isCuda) {
      const host = from.storage as HostStorage;
      if (host instanceof PinnedHostStorage) {
        cuda().cudaMemcpyAsync(dst.dataPtr, pinnedAddress(host, from), from.nbytes, MemcpyKind.HostToDevice, stream);
        return Promise.resolve();
      }
      const bytes = hostBytes(from);
      if (async) return uploadAsync(dst.dataPtr, from.nbytes, bytes, timeoutMs);
      uploadSync(dst.dataPtr, from.nbytes, bytes, timeoutMs);
      return Promise.resolve();
    }
    const host = dst.storage as HostStorage;
    if (host instanceof PinnedHostStorage) {
      cuda().cudaMemcpyAsync(pinnedAddress(host, dst), from.dataPtr, from.nbytes, MemcpyKind.DeviceToHost, stream);
      return Promise.resolve();
    }
    // Device → host here is copyFrom's (toAsync and toArray download on their own).
    downloadSync(from.dataPtr, from.nbytes, hostBytes(dst), timeoutMs);
    return Promise.resolve();
  } finally {
    // A contiguous device copy made here is freed stream-ordered, after the copies that read it.
    if (from !== src) from.dispose();
  }
}

/** The host address of the first element of `t`, a tensor over the pinned `host`. */
function pinnedAddress(host: PinnedHostStorage, t: Tensor): bigint {
  const skip = host.byteOffset + t.offset * t.itemsize;
  return skip === 0 ? host.ptr : host.ptr + BigInt(skip);
}

function inferDtype(data: unknown): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint8Array) return 'uint8';
  let first: unknown = data;
  while (Array.isArray(first)) first = first[0];
  return typeof first === 'bigint' ? 'int64' : 'float32';
}

function flatten(data: unknown): { flat: ArrayLike<number | bigint>; shape: number[] } {
  if (ArrayBuffer.isView(data))
    return { flat: data as unknown as ArrayLike<number>, shape: [(data as unknown as ArrayLike<number>).length] };
  if (!Array.isArray(data)) {
    if (typeof data === 'number' || typeof data === 'bigint') return { flat: [data], shape: [] };
    throw new InvalidArgumentError('data', `expected numbers, nested arrays or a typed array, got ${typeof data}`);
  }
  const shape: number[] = [];
  let probe: unknown = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const flat = (data as unknown[]).flat(Infinity) as (number | bigint)[];
  if (flat.length !== shape.reduce((a, b) => a * b, 1))
    throw new InvalidArgumentError('data', 'nested arrays are ragged');
  return { flat, shape };
}
