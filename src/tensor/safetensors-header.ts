/**
 * The safetensors header (huggingface/safetensors, `safetensors/src/tensor.rs`): an
 * 8-byte little-endian length N, N bytes of UTF-8 JSON mapping each tensor name to
 * `{ dtype, shape, data_offsets: [begin, end] }` (offsets into the data that follows)
 * plus an optional `__metadata__` map of strings, then the data. Parsing checks what
 * the reference's `SafeTensors::read_metadata` and `Metadata::validate` check: N at
 * most 100 MB and inside the file, valid UTF-8 JSON, offsets that tile the data from
 * byte 0 with no gap or overlap, each tensor's bytes equal to its elements × dtype
 * size, and the last offset at the end of the file. Writing follows the reference's
 * `prepare`: tensors by descending dtype alignment then name, compact JSON with
 * `__metadata__` first, padded with spaces to a multiple of 8 bytes.
 */
import { SafetensorsError } from '../errors.ts';
import type { DType } from './dtype.ts';

/** The reference implementation's limit on N (MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

/** safetensors dtype code ↔ torch name; the order is the reference's `Dtype` enum (ascending alignment). */
const CODES: readonly [string, DType][] = [
  ['U8', 'uint8'],
  ['I8', 'int8'],
  ['F8_E5M2', 'float8_e5m2'],
  ['F8_E4M3', 'float8_e4m3fn'],
  ['F16', 'float16'],
  ['BF16', 'bfloat16'],
  ['I32', 'int32'],
  ['F32', 'float32'],
  ['F64', 'float64'],
  ['I64', 'int64'],
];
const toDtype = new Map(CODES);
const toCode = new Map(CODES.map(([c, d]) => [d, c]));
const rank = new Map(CODES.map(([c], i) => [c, i]));
const SIZES: Record<string, number> = {
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F16: 2,
  BF16: 2,
  I32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
};
/** Codes of the format that gpugroup has no dtype for (named in the error). */
const UNSUPPORTED = new Set(['BOOL', 'I16', 'U16', 'U32', 'U64', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64']);

/** The safetensors code of a gpugroup dtype (`float32` → `F32`). */
export function safetensorsCode(dtype: DType): string {
  const code = toCode.get(dtype);
  if (!code) throw new SafetensorsError('(write)', `dtype ${dtype} has no safetensors code`);
  return code;
}

/** One tensor of a file: where its bytes are, relative to the start of the data. */
export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Bytes from the start of the data section. */
  begin: number;
  end: number;
}

/** A parsed header. */
export interface SafetensorsHeader {
  /** Tensors in file order (by offset). */
  entries: SafetensorsEntry[];
  /** `__metadata__`, or an empty object. */
  metadata: Record<string, string>;
  /** File offset of the data section: 8 + N. */
  dataStart: number;
}

/** Reads N from the first 8 bytes and checks it against the limit and the file size. */
export function headerLength(prefix: Uint8Array, fileBytes: number, path: string): number {
  if (fileBytes < 8 || prefix.length < 8)
    throw new SafetensorsError(path, `the file has ${fileBytes} bytes; a safetensors file starts with 8`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw new SafetensorsError(path, `header length ${n} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes`);
  if (Number(n) + 8 > fileBytes)
    throw new SafetensorsError(path, `header length ${n} runs past the end of a ${fileBytes}-byte file`);
  return Number(n);
}

function isDims(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/** Parses and validates the N header bytes of a file of `fileBytes` bytes. */
export function parseHeader(json: Uint8Array, fileBytes: number, path: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw new SafetensorsError(path, 'the header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new SafetensorsError(path, "the header does not start with '{'");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(path, `the header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new SafetensorsError(path, 'the header is not a JSON object');
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Array.isArray(info))
        throw new SafetensorsError(path, '__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw new SafetensorsError(path, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null || typeof t.dtype !== 'string' || !isDims(t.shape))
      throw new SafetensorsError(path, `tensor '${name}': expected { dtype, shape, data_offsets }`);
    const offsets = t.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !isDims(offsets))
      throw new SafetensorsError(path, `tensor '${name}': data_offsets must be two non-negative integers`);
    const dtype = toDtype.get(t.dtype);
    if (!dtype) {
      const known = UNSUPPORTED.has(t.dtype) ? 'a safetensors dtype gpugroup has no tensor type for' : 'not a dtype';
      throw new SafetensorsError(
        path,
        `tensor '${name}': dtype ${t.dtype} is ${known}; supported: ${CODES.map(([c]) => c).join(', ')}`,
      );
    }
    let numel = 1;
    for (const d of t.shape) numel *= d;
    const [begin, end] = offsets;
    if (!Number.isSafeInteger(numel * SIZES[t.dtype]))
      throw new SafetensorsError(path, `tensor '${name}': shape [${t.shape.join(', ')}] overflows`);
    if (end < begin) throw new SafetensorsError(path, `tensor '${name}': data_offsets [${begin}, ${end}] end first`);
    if (end - begin !== numel * SIZES[t.dtype])
      throw new SafetensorsError(
        path,
        `tensor '${name}': ${t.dtype} [${t.shape.join(', ')}] is ${numel * SIZES[t.dtype]} bytes but data_offsets span ${end - begin}`,
      );
    entries.push({ name, dtype, shape: t.shape, begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of entries) {
    if (e.begin !== at)
      throw new SafetensorsError(
        path,
        `tensor '${e.name}': data_offsets start at ${e.begin}, expected ${at} (tensors must tile the data with no gap or overlap)`,
      );
    at = e.end;
  }
  const dataStart = 8 + json.length;
  if (dataStart + at !== fileBytes)
    throw new SafetensorsError(
      path,
      `the tensors cover ${at} data bytes but the file holds ${fileBytes - dataStart} after the header`,
    );
  return { entries, metadata, dataStart };
}

/** A tensor to write: name, dtype and shape (its bytes are written in the returned order). */
export interface HeaderTensor {
  name: string;
  dtype: DType;
  shape: readonly number[];
  bytes: number;
}

/**
 * The 8-byte length and the padded JSON header for `tensors`, and the order their
 * bytes must follow it in.
 */
export function buildHeader(
  tensors: readonly HeaderTensor[],
  metadata?: Record<string, string>,
): { header: Uint8Array; order: HeaderTensor[] } {
  const order = [...tensors].sort((a, b) => {
    const d = rank.get(safetensorsCode(b.dtype))! - rank.get(safetensorsCode(a.dtype))!;
    return d !== 0 ? d : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
  // Written member by member: a JS object would move integer-like names ("0") first.
  const members = (pairs: [string, unknown][]) => pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',');
  const parts: [string, string][] = [];
  if (metadata)
    parts.push(['__metadata__', `{${members(Object.entries(metadata).map(([k, v]) => [k, JSON.stringify(v)]))}}`]);
  let offset = 0;
  for (const t of order) {
    const info = { dtype: safetensorsCode(t.dtype), shape: [...t.shape], data_offsets: [offset, offset + t.bytes] };
    parts.push([t.name, JSON.stringify(info)]);
    offset += t.bytes;
  }
  const json = new TextEncoder().encode(`{${members(parts)}}`);
  const n = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, order };
}
