/**
 * Loading and saving safetensors files (header format in ./safetensors-header.ts).
 *
 * Loading streams: host tensors are read straight into their storage; device tensors
 * go through a small ring of page-locked host buffers (4 × 16 MiB by default, kept
 * for the next load): file reads run on libuv's threadpool, several at once, straight
 * into the buffers, while the copies of earlier buffers run on the current stream. Nothing close to the file's size is ever held in
 * JavaScript memory. Files with several shards load from a list of paths or from the
 * `model.safetensors.index.json` that Hugging Face checkpoints ship (its `weight_map`).
 *
 * Saving writes a file the reference implementation (and so torch's `safetensors`
 * package) reads back byte for byte the same: see `buildHeader`.
 */
import { writeSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { MemcpyKind, cuda } from '../../native/index.ts';
import { InvalidArgumentError, SafetensorsError } from '../errors.ts';
import type { DType } from './dtype.ts';
import {
  buildHeader,
  headerLength,
  parseHeader,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from './safetensors-header.ts';
import { mapPinned } from './pinned.ts';
import { downloadAsync } from './staging.ts';
import { CudaEvent, currentDevice, currentStream, throwIfStreamFailed } from './stream.ts';
import { parseDevice, Tensor } from './tensor.ts';

type FileHandle = Awaited<ReturnType<typeof open>>;

/** Options of {@link loadSafetensors}. */
export interface LoadSafetensorsOptions {
  /** Where the tensors go: `cpu` (default) or `cuda:N` (the current device). */
  device?: string;
  /** Loads only the tensors it returns true for (the others are never read). */
  filter?: (name: string, info: { dtype: DType; shape: readonly number[] }) => boolean;
  /** Bytes of each host buffer a device load streams through (default 16 MiB). */
  bufferBytes?: number;
  /** Host buffers in flight (default 4). */
  buffers?: number;
  /** Deadline for the load's waits on the device (default 120 s). */
  timeoutMs?: number;
}

/** A file's header: its tensors (in file order) and its `__metadata__`. */
export interface SafetensorsInfo {
  tensors: { name: string; dtype: DType; shape: number[]; bytes: number }[];
  metadata: Record<string, string>;
}

/** Tensors to save: a Map, a record, or [name, tensor] pairs. */
export type NamedTensorsInput = Map<string, Tensor> | Record<string, Tensor> | Iterable<readonly [string, Tensor]>;

/** Reads the header of one file: 8 bytes, then N bytes, nothing else. */
async function readHeader(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const { size } = await fh.stat();
  const prefix = new Uint8Array(8);
  await readFully(fh, prefix, Math.min(8, size), 0, path);
  const n = headerLength(prefix, size, path);
  const json = new Uint8Array(n);
  await readFully(fh, json, n, 8, path);
  return parseHeader(json, size, path);
}

/** Reads exactly `bytes` bytes at file offset `position` into `into` (fs reads may return short). */
async function readFully(fh: FileHandle, into: Uint8Array, bytes: number, position: number, path: string) {
  let done = 0;
  while (done < bytes) {
    const want = Math.min(bytes - done, 1 << 30);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0) throw new SafetensorsError(path, `the file ended at byte ${position + done}`);
    done += bytesRead;
  }
}

/** The header of a safetensors file: tensor names, dtypes, shapes and `__metadata__`. */
export async function readSafetensorsInfo(path: string): Promise<SafetensorsInfo> {
  const fh = await openFile(path);
  try {
    const h = await readHeader(fh, path);
    return {
      tensors: h.entries.map((e) => ({ name: e.name, dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin })),
      metadata: h.metadata,
    };
  } finally {
    await fh.close();
  }
}

async function openFile(path: string, flags = 'r'): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (err) {
    throw new SafetensorsError(path, `cannot open: ${(err as Error).message}`, { cause: err });
  }
}

/** Shard files and the names each must hold, from a `*.safetensors.index.json`. */
async function readIndex(path: string): Promise<Map<string, Set<string>>> {
  let index: { weight_map?: Record<string, unknown> };
  try {
    index = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new SafetensorsError(path, `cannot read the shard index: ${(err as Error).message}`, { cause: err });
  }
  if (typeof index?.weight_map !== 'object' || index.weight_map === null)
    throw new SafetensorsError(path, 'the shard index has no weight_map object');
  const files = new Map<string, Set<string>>();
  for (const [name, file] of Object.entries(index.weight_map)) {
    if (typeof file !== 'string') throw new SafetensorsError(path, `weight_map.${name} is not a file name`);
    const full = resolve(dirname(path), file);
    if (!files.has(full)) files.set(full, new Set());
    files.get(full)!.add(name);
  }
  return files;
}

/**
 * Loads the tensors of a safetensors file, of several shards (a list of paths), or of
 * a checkpoint's `model.safetensors.index.json`, onto `device`. Returns them by name
 * in file order. Malformed files raise {@link SafetensorsError} naming the file and
 * what is wrong; a dtype gpugroup has no tensor type for (BOOL, U16, …) names itself.
 */
export async function loadSafetensors(
  source: string | readonly string[],
  opts: LoadSafetensorsOptions = {},
): Promise<Map<string, Tensor>> {
  const device = opts.device ?? 'cpu';
  parseDevice(device);
  const bufferBytes = opts.bufferBytes ?? 16 << 20;
  const buffers = opts.buffers ?? 4;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  if (!Number.isSafeInteger(bufferBytes) || bufferBytes < 4096)
    throw new InvalidArgumentError('bufferBytes', `expected an integer of at least 4096, got ${bufferBytes}`);
  if (!Number.isInteger(buffers) || buffers < 1)
    throw new InvalidArgumentError('buffers', `expected a positive integer, got ${buffers}`);
  if (opts.filter !== undefined && typeof opts.filter !== 'function')
    throw new InvalidArgumentError('filter', `expected a function, got ${typeof opts.filter}`);
  let files: [string, Set<string> | null][];
  if (typeof source === 'string' && source.endsWith('.json')) {
    files = [...(await readIndex(source))];
  } else if (typeof source === 'string') {
    files = [[source, null]];
  } else if (Array.isArray(source) && source.every((p) => typeof p === 'string')) {
    files = source.map((p) => [p, null]);
  } else {
    throw new InvalidArgumentError('source', 'expected a path, an array of paths or an index .json path');
  }
  const out = new Map<string, Tensor>();
  try {
    for (const [path, names] of files) {
      const fh = await openFile(path);
      try {
        const header = await readHeader(fh, path);
        const wanted = header.entries.filter(
          (e) => (!names || names.has(e.name)) && (!opts.filter || opts.filter(e.name, e)),
        );
        if (names) {
          const found = new Set(header.entries.map((e) => e.name));
          const missing = [...names].filter((n) => !found.has(n));
          if (missing.length > 0)
            throw new SafetensorsError(path, `the shard index maps ${missing.join(', ')} here but the file lacks them`);
        }
        for (const e of wanted) {
          if (out.has(e.name)) throw new SafetensorsError(path, `tensor '${e.name}' is in two of the files`);
        }
        const tensors = wanted.map((e) => Tensor.empty(e.shape, { dtype: e.dtype, device }));
        for (let i = 0; i < wanted.length; i++) out.set(wanted[i].name, tensors[i]);
        if (device === 'cpu') await readIntoHost(fh, path, header.dataStart, wanted, tensors);
        else await streamToDevice(fh, path, header.dataStart, wanted, tensors, bufferBytes, buffers, timeoutMs);
      } finally {
        await fh.close();
      }
    }
    if (device !== 'cpu') throwIfStreamFailed(currentStream().handle);
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  }
  return out;
}

async function readIntoHost(
  fh: FileHandle,
  path: string,
  dataStart: number,
  entries: SafetensorsEntry[],
  tensors: Tensor[],
): Promise<void> {
  for (let i = 0; i < entries.length; i++) {
    const s = tensors[i].storage;
    if (s.kind !== 'host') throw new SafetensorsError(path, 'expected a host tensor');
    const view = new Uint8Array(s.buffer, s.byteOffset, s.bytes);
    await readFully(fh, view, s.bytes, dataStart + entries[i].begin, path);
  }
}

/** One read of the ring: file bytes [position, position + bytes) and the tensor pieces inside. */
interface Piece {
  position: number;
  bytes: number;
  parts: { dst: bigint; at: number; bytes: number }[];
}

/** Cuts the selected tensors into reads of at most `max` bytes; adjacent tensors share reads. */
function planReads(dataStart: number, entries: SafetensorsEntry[], tensors: Tensor[], max: number): Piece[] {
  const pieces: Piece[] = [];
  let cur: Piece | null = null;
  entries.forEach((e, i) => {
    const base = tensors[i].numel > 0 ? tensors[i].dataPtr : 0n;
    let done = 0;
    const total = e.end - e.begin;
    while (done < total) {
      const position = dataStart + e.begin + done;
      if (!cur || cur.position + cur.bytes !== position || cur.bytes === max) {
        cur = { position, bytes: 0, parts: [] };
        pieces.push(cur);
      }
      const n = Math.min(total - done, max - cur.bytes);
      cur.parts.push({ dst: base + BigInt(done), at: cur.bytes, bytes: n });
      cur.bytes += n;
      done += n;
    }
  });
  return pieces;
}

/** One host buffer of the ring: pinned (with its pointer and the event of its last copy) or pageable. */
interface Slot {
  view: Uint8Array;
  ptr: bigint | null;
  event: CudaEvent | null;
}

/**
 * The last load's pinned ring, kept for the next load of the same device and buffer
 * size: page-locking tens of MiB costs milliseconds per load otherwise. At most one
 * ring (buffers × bufferBytes) is kept.
 */
let kept: { key: string; slots: Slot[] } | null = null;

/** The ring's buffers: page-locked when the runtime gives them (./pinned.ts), pageable otherwise. */
function ringSlots(count: number, bytes: number): Slot[] {
  const key = `${currentDevice()}:${bytes}`;
  const slots: Slot[] = kept?.key === key ? kept.slots.splice(0, count) : [];
  try {
    while (slots.length < count) {
      const { ptr, view } = mapPinned(bytes);
      slots.push({ view, ptr, event: new CudaEvent() });
    }
  } catch {
    freeSlots(slots);
    return Array.from({ length: count }, () => ({ view: new Uint8Array(bytes), ptr: null, event: null }));
  }
  return slots;
}

function freeSlots(slots: Slot[]): void {
  for (const s of slots) {
    s.event?.dispose();
    if (s.ptr !== null) cuda().cudaFreeHost(s.ptr);
  }
}

/** Keeps a finished ring (every copy from it complete) for the next load, freeing the one kept before. */
function keepSlots(slots: Slot[], bytes: number): void {
  if (slots.length === 0 || slots[0].ptr === null) return;
  if (kept) freeSlots(kept.slots);
  kept = { key: `${currentDevice()}:${bytes}`, slots };
}

/**
 * Device load: `buffers` host buffers in a ring. File reads for the next buffers run on
 * libuv's threadpool while the current buffer's bytes are copied to the device on the
 * current stream. From a pinned buffer the copy engine reads directly (one
 * cudaMemcpyAsync, no host copy); the buffer is read into again once the event recorded
 * after its copies has completed. From a pageable buffer the driver stages the bytes
 * before cudaMemcpyAsync returns (CUDA's documented behaviour), so it is free at once.
 */
async function streamToDevice(
  fh: FileHandle,
  path: string,
  dataStart: number,
  entries: SafetensorsEntry[],
  tensors: Tensor[],
  bufferBytes: number,
  buffers: number,
  timeoutMs: number,
): Promise<void> {
  const pieces = planReads(dataStart, entries, tensors, bufferBytes);
  if (pieces.length === 0) return;
  const slotBytes = pieces.reduce((m, p) => Math.max(m, p.bytes), 0);
  const ring = ringSlots(Math.min(buffers, pieces.length), slotBytes);
  const stream = currentStream();
  const rt = cuda();
  const reads: Promise<void>[] = [];
  const start = (i: number) => {
    const p = pieces[i];
    const slot = ring[i % ring.length];
    const free = slot.event && !slot.event.query() ? slot.event.wait(timeoutMs, { spin: false }) : null;
    reads[i] = (free ?? Promise.resolve()).then(() => readFully(fh, slot.view, p.bytes, p.position, path));
  };
  for (let i = 0; i < ring.length; i++) start(i);
  try {
    for (let i = 0; i < pieces.length; i++) {
      await reads[i];
      const slot = ring[i % ring.length];
      for (const part of pieces[i].parts) {
        const src = slot.ptr !== null ? slot.ptr + BigInt(part.at) : slot.view.subarray(part.at, part.at + part.bytes);
        rt.cudaMemcpyAsync(part.dst, src, part.bytes, MemcpyKind.HostToDevice, stream.handle);
      }
      slot.event?.record(stream);
      if (i + ring.length < pieces.length) start(i + ring.length);
    }
  } finally {
    // A failed read leaves the others running on the buffers: let them settle first.
    await Promise.allSettled(reads);
    let idle = true;
    for (const slot of ring) {
      if (slot.event && !slot.event.query())
        await slot.event.wait(timeoutMs, { spin: false }).catch(() => {
          idle = false;
        });
    }
    // A ring whose copies did not finish is freed (cudaFreeHost waits for them), never reused.
    if (idle) keepSlots(ring, slotBytes);
    else freeSlots(ring);
  }
}

function namedEntries(tensors: NamedTensorsInput): [string, Tensor][] {
  if (tensors instanceof Map) return [...tensors];
  if (tensors && typeof (tensors as Iterable<unknown>)[Symbol.iterator] === 'function')
    return [...(tensors as Iterable<readonly [string, Tensor]>)].map(([n, t]) => [n, t]);
  if (tensors && typeof tensors === 'object') return Object.entries(tensors as Record<string, Tensor>);
  throw new InvalidArgumentError('tensors', 'expected a Map, a record or [name, tensor] pairs');
}

/**
 * Writes `tensors` to one safetensors file at `path` (replaced atomically: written
 * beside it, then renamed), with `metadata` as its `__metadata__`. Device tensors are
 * copied out in stream order (after the work enqueued so far) through pinned staging,
 * a piece at a time; non-contiguous tensors are written in row-major order.
 */
export async function saveSafetensors(
  path: string,
  tensors: NamedTensorsInput,
  metadata?: Record<string, string>,
  opts: { timeoutMs?: number } = {},
): Promise<void> {
  const list = namedEntries(tensors);
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (typeof name !== 'string' || name === '__metadata__' || name.length === 0)
      throw new InvalidArgumentError('tensors', `invalid tensor name ${JSON.stringify(name)}`);
    if (seen.has(name)) throw new InvalidArgumentError('tensors', `tensor '${name}' appears twice`);
    if (!(t instanceof Tensor)) throw new InvalidArgumentError('tensors', `'${name}' is not a Tensor`);
    seen.add(name);
  }
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some((v) => typeof v !== 'string'))
      throw new InvalidArgumentError('metadata', 'expected an object of string values');
  }
  const byName = new Map(list);
  const { header, order } = buildHeader(
    list.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: t.nbytes })),
    metadata,
  );
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fh = await openFile(tmp, 'w');
  try {
    await fh.write(header, 0, header.length, 0);
    let position = header.length;
    for (const entry of order) {
      const t = byName.get(entry.name)!;
      const src = t.contiguous();
      try {
        await writeTensor(fh, src, position, timeoutMs);
      } finally {
        if (src !== t) src.dispose();
      }
      position += entry.bytes;
    }
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

async function writeTensor(fh: FileHandle, t: Tensor, position: number, timeoutMs: number): Promise<void> {
  if (t.nbytes === 0) return;
  const s = t.storage;
  if (s.kind === 'host') {
    const view = new Uint8Array(s.buffer, s.byteOffset + t.offset * t.itemsize, t.nbytes);
    for (let done = 0; done < view.length; ) {
      const { bytesWritten } = await fh.write(view, done, Math.min(view.length - done, 1 << 30), position + done);
      done += bytesWritten;
    }
    return;
  }
  // Pinned staging (./staging.ts) hands over each piece as it arrives, in stream order;
  // it is written before the next piece is awaited.
  await downloadAsync(
    t.dataPtr,
    t.nbytes,
    (offset, data) => {
      for (let w = 0; w < data.length; ) w += writeSync(fh.fd, data, w, data.length - w, position + offset + w);
    },
    timeoutMs,
  );
}
