/**
 * Values ↔ stored bits for a range of elements, written straight into (or read straight
 * out of) any byte buffer: a host tensor's storage or a pinned staging chunk. Typed
 * arrays of the storage's own type move as one memcpy (TypedArray.set); other typed
 * arrays convert in one native call; plain arrays, bigints and the encoded dtypes
 * (float16, bfloat16, fp8) convert element by element.
 */
import { type DType, type StorageArray, decodeTable, dtypeInfo, encodeValues } from './dtype.ts';

type Values = ArrayLike<number | bigint>;

/** Elements [start, end) of `data` (a view for typed arrays, a copy for plain arrays). */
function range(data: Values, start: number, end: number): Values {
  if (start === 0 && end === data.length) return data;
  if (ArrayBuffer.isView(data))
    return (data as unknown as { subarray(a: number, b: number): Values }).subarray(start, end);
  return Array.prototype.slice.call(data, start, end) as Values;
}

/** Writes elements [start, end) of `data`, as `dtype`, into `out` (which holds end - start elements). */
export function writeValues(dtype: DType, data: Values, start: number, end: number, out: StorageArray): void {
  const info = dtypeInfo(dtype);
  const part = range(data, start, end);
  const n = end - start;
  if (info.encoded) {
    encodeValues(dtype, part as ArrayLike<number>, out as Uint16Array | Uint8Array);
  } else if (out instanceof BigInt64Array) {
    if (part instanceof BigInt64Array) out.set(part);
    else for (let i = 0; i < n; i++) out[i] = BigInt(part[i]);
  } else if (ArrayBuffer.isView(part) && !(part instanceof BigInt64Array) && !(part instanceof BigUint64Array)) {
    (out as Float64Array).set(part as unknown as Float64Array);
  } else {
    const o = out as Float64Array;
    for (let i = 0; i < n; i++) o[i] = Number(part[i]);
  }
}

/** A typed array of `dtype`'s storage type over `bytes` (aligned: pieces and storages are). */
export function storageView(dtype: DType, bytes: Uint8Array): StorageArray {
  const info = dtypeInfo(dtype);
  return new info.storage(bytes.buffer, bytes.byteOffset, bytes.byteLength / info.bytes);
}

/**
 * An uninitialised array for `numel` values as a user sees them (float32 for the encoded
 * dtypes). Large ones skip zero-filling (Buffer.allocUnsafe: its own ArrayBuffer from
 * 4 KiB up), since a copy overwrites every byte.
 */
export function allocValues(dtype: DType, numel: number): StorageArray {
  const info = dtypeInfo(dtype);
  const ctor = info.encoded ? Float32Array : info.storage;
  const itemsize = info.encoded ? 4 : info.bytes;
  const bytes = numel * itemsize;
  if (bytes < 4096) return new ctor(numel);
  const buf = Buffer.allocUnsafe(bytes);
  return buf.byteOffset % itemsize === 0 ? new ctor(buf.buffer, buf.byteOffset, numel) : new ctor(numel);
}

/**
 * Writes stored bits `bits` (a whole number of elements) into `out`, at element `at`, as
 * the values a user sees: raw bytes for plain dtypes, decoded float32 for encoded ones.
 */
export function readValues(dtype: DType, bits: Uint8Array, out: StorageArray, at: number): void {
  const info = dtypeInfo(dtype);
  if (!info.encoded) {
    new Uint8Array(out.buffer, out.byteOffset + at * info.bytes, bits.byteLength).set(bits);
    return;
  }
  const lut = decodeTable(dtype);
  const src = storageView(dtype, bits) as Uint16Array | Uint8Array;
  const dst = out as Float32Array;
  for (let i = 0; i < src.length; i++) dst[at + i] = lut[src[i]];
}
