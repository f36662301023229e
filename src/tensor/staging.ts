/**
 * Host↔device copies through pinned staging. A copy from pageable memory is staged by
 * the CUDA driver through its own small pinned buffers and, for device→host, waits on
 * the host; torch's `tensor.to('cuda')` from a pageable tensor takes that path. Here the
 * copy goes through a small per-device pool of page-locked chunks (cudaMallocHost) that
 * the host fills (or drains) while the copy engine moves the previous chunk: each piece
 * is one cudaMemcpyAsync from a chunk plus one event, and a chunk is reused once its
 * event completed (the CUDA Programming Guide, "Page-Locked Host Memory" and
 * "Overlap of Data Transfer and Kernel Execution"; torch's CachingHostAllocator keeps
 * pinned blocks the same way, guarded by events). The async forms yield to the event
 * loop between pieces, so a large copy never holds it for more than about a piece's
 * host copy (a 4 MiB memcpy, well under a millisecond).
 *
 * Settings (src/env.ts, read at first use): GPUGROUP_STAGING_CHUNK_BYTES,
 * GPUGROUP_STAGING_CHUNKS (0: copies go straight from pageable memory, the driver's
 * path) and GPUGROUP_STAGING_MIN_PIECE_BYTES (uploads up to it are one piece, downloads
 * up to half of it; larger ones are cut so that the host copy of one piece overlaps the
 * transfer of another).
 */
import { CaptureStatus, MemcpyKind, cuda, cudaErrorNotReady } from '../../native/index.ts';
import { settingAtFirstUse } from '../env.ts';
import { CollectiveTimeoutError } from '../errors.ts';
import { type CopyJob, beginCopy, copyBytes } from './host-copy.ts';
import { mapPinned } from './pinned.ts';
import { CudaEvent, currentDevice, currentStream, pollUntil, throwIfStreamFailed } from './stream.ts';

/** One piece of a staged copy: `bytes` bytes at byte `offset`, moved through chunk `slot`. */
export interface Piece {
  offset: number;
  bytes: number;
  slot: number;
}

/** What the planner needs to cut a copy. */
export interface StagingConfig {
  /** Bytes of one pinned chunk (the largest piece). */
  chunkBytes: number;
  /** Chunks per device; 0 disables staging. */
  chunks: number;
  /** Copies up to this size are one piece; larger ones use pieces of at least this size. */
  minPieceBytes: number;
}

/** Piece sizes (past the first) are multiples of this, so a piece never splits an element. */
const PIECE_ALIGN = 64 << 10;

/**
 * Cuts a copy of `bytes` bytes into pieces moved through `slots` chunks in turn (pure; the
 * copy paths and the tests share it). A copy up to `minPieceBytes` is one piece; a larger
 * one is spread over the chunks (ceil(bytes / slots), rounded up to 64 KiB), each piece at
 * least `minPieceBytes` and at most `chunkBytes`: with the defaults (1 MiB, 4 × 4 MiB) an
 * upload up to 1 MiB is one piece (on an H200 host one 1 MiB piece beat four of 256 KiB:
 * each piece costs a copy call and an event), 16 MiB four overlapping pieces, and 256 MiB
 * chunk-sized ones; downloads plan with half the minimum ({@link downloadPlan}). Every
 * piece but the last is a multiple of 64 KiB (element boundaries hold for every dtype).
 */
export function planPieces(bytes: number, slots: number, config: StagingConfig): Piece[] {
  if (bytes <= 0) return [];
  const { chunkBytes, minPieceBytes } = config;
  let size: number;
  if (bytes <= Math.min(minPieceBytes, chunkBytes)) size = bytes;
  else {
    const spread = Math.ceil(Math.ceil(bytes / Math.max(slots, 1)) / PIECE_ALIGN) * PIECE_ALIGN;
    size = Math.min(chunkBytes, Math.max(minPieceBytes, spread));
  }
  const pieces: Piece[] = [];
  for (let offset = 0, i = 0; offset < bytes; offset += size, i++) {
    pieces.push({ offset, bytes: Math.min(size, bytes - offset), slot: i % Math.max(slots, 1) });
  }
  return pieces;
}

let config: StagingConfig | undefined;

/** The staging settings in force (read from the environment at first use). */
function current(): StagingConfig {
  config ??= {
    chunkBytes: Math.ceil(settingAtFirstUse('GPUGROUP_STAGING_CHUNK_BYTES') / PIECE_ALIGN) * PIECE_ALIGN,
    chunks: settingAtFirstUse('GPUGROUP_STAGING_CHUNKS'),
    minPieceBytes: settingAtFirstUse('GPUGROUP_STAGING_MIN_PIECE_BYTES'),
  };
  return config;
}

/** The staging settings in force. */
export function stagingConfig(): Readonly<StagingConfig> {
  return { ...current() };
}

/**
 * Changes the staging settings for copies started from now on (benchmarks compare the
 * staged and the pageable paths in one process). Chunks already allocated keep their size
 * until {@link releaseStaging}.
 */
export function configureStaging(changes: Partial<StagingConfig>): void {
  const config = current();
  const resized = changes.chunkBytes !== undefined && changes.chunkBytes !== config.chunkBytes;
  Object.assign(config, changes);
  if (resized) releaseStaging();
}

interface Slot {
  ptr: bigint;
  view: Uint8Array;
  bytes: number;
  /** Recorded after the last copy through this chunk; null until the first. */
  event: CudaEvent | null;
  /** Held by a copy in progress (an async copy holds its chunks across awaits). */
  leased: boolean;
  /** Released from the pool while leased: freed when its copy lets go of it. */
  retired: boolean;
  /** Where the piece now in this chunk starts, and where the next one goes (see placeIn). */
  at: number;
  cursor: number;
}

/**
 * Places a piece of `bytes` in `slot`: the chunk's bytes are taken in turn (a cursor that
 * wraps), so that back-to-back small copies do not reuse the lines the CPU touched in the
 * last one. The copy engine reads or writes lines still in the CPU's caches at about half
 * the link's speed (an H200 host: a 1 MiB DMA into a chunk just drained takes ~50 µs, into
 * untouched memory 29 µs). Every earlier use of the chunk has completed by now (each use
 * waits for the one before), so any part of it is free.
 */
function placeIn(slot: Slot, bytes: number): Uint8Array {
  const at = slot.cursor + bytes <= slot.bytes ? slot.cursor : 0;
  slot.at = at;
  // Pieces start on whole pages (every dtype's alignment, and whole lines for the DMA).
  slot.cursor = Math.ceil((at + bytes) / PLACE_ALIGN) * PLACE_ALIGN;
  return placedView(slot, bytes);
}

const PLACE_ALIGN = 4096;

/** The bytes of the piece now in `slot`. */
function placedView(slot: Slot, bytes: number): Uint8Array {
  return slot.view.subarray(slot.at, slot.at + bytes);
}

/** The host address of the piece now in `slot`. */
function placedPtr(slot: Slot): bigint {
  return slot.at === 0 ? slot.ptr : slot.ptr + BigInt(slot.at);
}

const pools = new Map<number, Slot[]>();

/** Leases up to `want` free chunks of the current device (allocating them on first use). */
function lease(want: number, config: StagingConfig): Slot[] {
  if (config.chunks <= 0 || want <= 0) return [];
  const device = currentDevice();
  let pool = pools.get(device);
  if (!pool) {
    pool = [];
    pools.set(device, pool);
  }
  const out: Slot[] = [];
  for (const s of pool) {
    if (out.length === want) break;
    if (!s.leased && s.bytes >= config.chunkBytes) out.push(s);
  }
  while (out.length < want && pool.length < config.chunks) {
    const { ptr, view } = mapPinned(config.chunkBytes);
    const slot: Slot = {
      ptr,
      view,
      bytes: config.chunkBytes,
      event: null,
      leased: false,
      retired: false,
      at: 0,
      cursor: 0,
    };
    pool.push(slot);
    out.push(slot);
  }
  for (const s of out) s.leased = true;
  return out;
}

const captureStatus = new Int32Array(1);

/**
 * The chunks and pieces of a copy of `bytes` on `stream`: as many chunks as it has
 * pieces, up to the pool's size. None when staging is off, when every chunk is held by
 * async copies in progress, or while `stream` is being captured into a CUDA graph (a
 * captured copy from a chunk would read whatever the chunk holds at each replay; the
 * pageable path refuses capture, as CUDA documents for pageable copies).
 */
function leaseFor(bytes: number, stream: bigint, direction: 'upload' | 'download'): { slots: Slot[]; pieces: Piece[] } {
  const config = current();
  if (config.chunks <= 0) return { slots: [], pieces: [] };
  cuda().cudaStreamIsCapturing(stream, captureStatus);
  if (captureStatus[0] !== CaptureStatus.None) return { slots: [], pieces: [] };
  const plan = direction === 'download' ? downloadPlan(config) : config;
  const slots = lease(Math.min(config.chunks, Math.ceil(bytes / plan.minPieceBytes)), config);
  return { slots, pieces: slots.length > 0 ? planPieces(bytes, slots.length, plan) : [] };
}

/**
 * Downloads are cut at half the minimum piece (not below 64 KiB): the drain of a
 * download's last piece is host work that no transfer overlaps, and halving it paid on an
 * H200 host (toArray of 1 MiB, best of 80, two runs each in one device call: 49.5–50.0 µs
 * in two 512 KiB pieces, 61.4–67.5 µs in one), where uploads went the other way (best of
 * 300: one 1 MiB piece 47.7 µs, two 55.1 µs).
 */
function downloadPlan(config: StagingConfig): StagingConfig {
  return {
    ...config,
    minPieceBytes: Math.max(PIECE_ALIGN, Math.floor(config.minPieceBytes / 2 / PIECE_ALIGN) * PIECE_ALIGN),
  };
}

function unlease(slots: Slot[]): void {
  for (const s of slots) {
    s.leased = false;
    if (s.retired) free(s);
  }
}

function free(slot: Slot): void {
  if (slot.event && !slot.event.query()) cuda().cudaEventSynchronize(slot.event.handle);
  slot.event?.dispose();
  cuda().cudaFreeHost(slot.ptr);
}

/** Frees every staging chunk of this thread (they are allocated again on the next copy). */
export function releaseStaging(): void {
  for (const pool of pools.values()) {
    for (const s of pool) {
      if (s.leased) s.retired = true;
      else free(s);
    }
  }
  pools.clear();
}

function timeoutError(op: string, timeoutMs: number): Error {
  return new CollectiveTimeoutError('staging', op, 0, timeoutMs, []);
}

/** Spins on the chunk's event (a synchronous copy must not return before its chunk is reusable). */
function spinUntilFree(slot: Slot, deadline: number, op: string, timeoutMs: number): void {
  const ev = slot.event;
  if (!ev) return;
  const rt = cuda();
  while (rt.cudaEventQuery(ev.handle) === cudaErrorNotReady) {
    if (performance.now() > deadline) throw timeoutError(op, timeoutMs);
  }
}

/** True when the chunk's last copy has completed (or it never had one). */
function isFree(slot: Slot): boolean {
  return slot.event === null || slot.event.query();
}

function awaitFree(slot: Slot, timeoutMs: number, op: string): Promise<void> | null {
  const ev = slot.event;
  if (!ev || ev.query()) return null;
  return pollUntil(
    () => ev.query(),
    timeoutMs,
    () => timeoutError(op, timeoutMs),
  );
}

function recordOn(slot: Slot, stream: bigint): void {
  slot.event ??= new CudaEvent();
  cuda().cudaEventRecord(slot.event.handle, stream);
}

/**
 * The host side of an upload: a function that writes the source's bytes [offset,
 * offset + out.length) into `out` (a pinned chunk), or the source bytes themselves, which
 * are copied by memcpy (a large piece in parallel slices: ./host-copy.ts).
 */
export type Fill = ((offset: number, out: Uint8Array) => void) | Uint8Array;
/**
 * The host side of a download: a function that reads the bytes [offset, offset +
 * data.length) of the copy out of `data` (a pinned chunk), or the destination bytes
 * themselves (memcpy, a large piece in parallel slices).
 */
export type Drain = ((offset: number, data: Uint8Array) => void) | Uint8Array;

/**
 * A download's destination made once the first piece is on its way, so that allocating
 * it (a large array: malloc, fresh pages) overlaps that transfer instead of delaying it.
 * Not made when nothing is copied (zero bytes).
 */
export interface DeferredDrain {
  readonly make: () => Drain;
}

/** The drain itself, made now when it was deferred. */
function madeNow(drain: Drain | DeferredDrain): Drain {
  return drain instanceof Uint8Array || typeof drain === 'function' ? drain : drain.make();
}

/**
 * Starts filling `out` with the source's bytes from `offset`: bytes are copied by the
 * helper threads while the caller goes on (the job is waited for before the chunk is
 * used); a fill function runs here.
 */
function beginFill(fill: Fill, offset: number, out: Uint8Array): CopyJob {
  if (fill instanceof Uint8Array) return beginCopy(out, fill.subarray(offset, offset + out.byteLength));
  fill(offset, out);
  return DONE;
}

const DONE: CopyJob = { wait: () => {} };

function drainNow(drain: Drain, offset: number, data: Uint8Array, deadline: number): void {
  if (drain instanceof Uint8Array) copyBytes(drain.subarray(offset, offset + data.byteLength), data, deadline);
  else drain(offset, data);
}

/** Waits for a fill still in flight when a copy ends early (its helpers read the caller's memory). */
function settleFill(job: CopyJob | null): void {
  try {
    job?.wait();
  } catch {
    // The copy is failing already; its own error is the one the caller gets.
  }
}

/**
 * Enqueues the upload of piece `p` (filled already) from its chunk. The fill of `next`
 * starts first, on the helper threads, when it goes through another chunk that is free
 * now, so that the host copy overlaps this enqueue (otherwise the caller starts it after,
 * and the copy engine never waits on it). Returns that early fill, or null.
 */
function sendPiece(
  dst: bigint,
  p: Piece,
  next: Piece | undefined,
  slots: Slot[],
  fill: Fill,
  stream: bigint,
): CopyJob | null {
  const slot = slots[p.slot];
  const early =
    next && next.slot !== p.slot && isFree(slots[next.slot])
      ? beginFill(fill, next.offset, placeIn(slots[next.slot], next.bytes))
      : null;
  try {
    cuda().cudaMemcpyAsync(dst + BigInt(p.offset), placedPtr(slot), p.bytes, MemcpyKind.HostToDevice, stream);
    recordOn(slot, stream);
  } catch (err) {
    settleFill(early); // its helpers read the caller's memory: done before the error leaves
    throw err;
  }
  return early;
}

/** Enqueues the download of piece `p` into its chunk (free already), its event after it. */
function receivePiece(src: bigint, p: Piece, slots: Slot[], stream: bigint): void {
  const slot = slots[p.slot];
  placeIn(slot, p.bytes);
  cuda().cudaMemcpyAsync(placedPtr(slot), src + BigInt(p.offset), p.bytes, MemcpyKind.DeviceToHost, stream);
  recordOn(slot, stream);
}

/**
 * Uploads up to this size go straight from pageable memory: the driver copies so little
 * into its own staging before returning without waiting on the stream, and skipping the
 * chunk's event record and query made a 4 KiB upload ~4 µs faster on an H200 (15.3 µs
 * against 19.7 µs staged, fromArray + synchronize, bench copies).
 */
const SMALL_UPLOAD_BYTES = 64 << 10;

/** Host→device without staging: one pageable copy (the driver stages it before returning). */
function uploadPageable(dst: bigint, bytes: number, fill: Fill, stream: bigint): void {
  let tmp: Uint8Array;
  if (fill instanceof Uint8Array) tmp = fill.subarray(0, bytes);
  else {
    tmp = new Uint8Array(bytes);
    fill(0, tmp);
  }
  cuda().cudaMemcpyAsync(dst, tmp, bytes, MemcpyKind.HostToDevice, stream);
}

/**
 * Enqueues on the current stream the copy of `bytes` bytes, produced by `fill`, to the
 * device pointer `dst`. Returns once every byte is in a pinned chunk or on its way: the
 * source may change right after. Waits (spinning, with a deadline) only to reuse a chunk.
 */
export function uploadSync(dst: bigint, bytes: number, fill: Fill, timeoutMs = 120_000): void {
  if (bytes === 0) return;
  const stream = currentStream().handle;
  const { slots, pieces } = bytes <= SMALL_UPLOAD_BYTES ? { slots: [], pieces: [] } : leaseFor(bytes, stream, 'upload');
  if (slots.length === 0) {
    uploadPageable(dst, bytes, fill, stream);
    return;
  }
  const deadline = performance.now() + timeoutMs;
  const start = (p: Piece): CopyJob => {
    const slot = slots[p.slot];
    spinUntilFree(slot, deadline, 'upload', timeoutMs);
    return beginFill(fill, p.offset, placeIn(slot, p.bytes));
  };
  let filling: CopyJob | null = null;
  try {
    filling = start(pieces[0]);
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const job = filling;
      filling = null;
      job?.wait(deadline);
      const next = pieces[i + 1];
      filling = sendPiece(dst, p, next, slots, fill, stream);
      if (next && !filling) filling = start(next);
    }
  } finally {
    settleFill(filling);
    unlease(slots);
  }
}

/** How long an async copy works before it yields to the event loop. */
const YIELD_EVERY_MS = 1;

/**
 * The turns of an async copy: before each piece, the wait for its chunk without blocking,
 * then a yield to the event loop once about a millisecond of host work has gone by since
 * the last one. The wait alone is no yield: a chunk that frees up within the wait's short
 * spin resolves it without an event-loop turn, and a copy whose every chunk did so would
 * hold the loop from start to end.
 */
class Turns {
  private since = performance.now();
  constructor(
    private readonly timeoutMs: number,
    private readonly op: string,
  ) {}

  /** True once about a millisecond of host work has gone by since the last turn. */
  get due(): boolean {
    return performance.now() - this.since > YIELD_EVERY_MS;
  }

  /**
   * One turn of the event loop. Never with a host copy job of this copy in flight: the
   * helper threads take one job at a time, and another copy may start during the turn.
   */
  turn(): Promise<void> {
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.since = performance.now();
    });
  }

  /** What to await before using `slot`; null when nothing is due (no await, no microtask). */
  next(slot: Slot): Promise<void> | null {
    const busy = awaitFree(slot, this.timeoutMs, this.op);
    if (!this.due) return busy;
    return busy ? busy.then(() => this.turn()) : this.turn();
  }
}

/** {@link uploadSync} that yields to the event loop between pieces instead of spinning. */
export async function uploadAsync(dst: bigint, bytes: number, fill: Fill, timeoutMs = 120_000): Promise<void> {
  if (bytes === 0) return;
  const stream = currentStream().handle;
  const { slots, pieces } = bytes <= SMALL_UPLOAD_BYTES ? { slots: [], pieces: [] } : leaseFor(bytes, stream, 'upload');
  if (slots.length === 0) {
    uploadPageable(dst, bytes, fill, stream);
    return;
  }
  const deadline = () => performance.now() + timeoutMs;
  const turns = new Turns(timeoutMs, 'upload');
  /** Waits for `p`'s chunk without blocking (yielding every ~1 ms), then starts its fill. */
  const start = async (p: Piece): Promise<CopyJob> => {
    const slot = slots[p.slot];
    const turn = turns.next(slot);
    if (turn) await turn;
    return beginFill(fill, p.offset, placeIn(slot, p.bytes));
  };
  let filling: CopyJob | null = null;
  try {
    filling = await start(pieces[0]);
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const job = filling;
      filling = null;
      job?.wait(deadline());
      const next = pieces[i + 1];
      filling = sendPiece(dst, p, next, slots, fill, stream);
      if (next && !filling) filling = await start(next);
      else if (filling && turns.due) {
        // The next piece's fill started early (its chunk was free), so start() and its
        // turn are skipped: the fill ends first, then the turn, while the copy engine works.
        filling.wait(deadline());
        filling = DONE;
        await turns.turn();
      }
    }
  } finally {
    settleFill(filling);
    unlease(slots);
  }
}

/**
 * Copies `bytes` bytes from the device pointer `src` (in stream order: after the work
 * enqueued so far on the current stream) and hands them to `drain`, piece by piece, as
 * they arrive. Blocks the thread until the last piece is drained (spinning on events,
 * with a deadline); use {@link downloadAsync} where the event loop must stay free.
 */
export function downloadSync(src: bigint, bytes: number, drain: Drain | DeferredDrain, timeoutMs = 120_000): void {
  if (bytes === 0) return;
  const stream = currentStream().handle;
  const rt = cuda();
  const { slots, pieces } = leaseFor(bytes, stream, 'download');
  if (slots.length === 0) {
    const tmp = new Uint8Array(bytes);
    rt.cudaMemcpyAsync(tmp, src, bytes, MemcpyKind.DeviceToHost, stream);
    rt.cudaStreamSynchronize(stream);
    throwIfStreamFailed(stream);
    drainNow(madeNow(drain), 0, tmp, performance.now() + timeoutMs);
    return;
  }
  const deadline = performance.now() + timeoutMs;
  try {
    for (let i = 0; i < Math.min(slots.length, pieces.length); i++) {
      spinUntilFree(slots[pieces[i].slot], deadline, 'download', timeoutMs);
      receivePiece(src, pieces[i], slots, stream);
    }
    const sink = madeNow(drain);
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const slot = slots[p.slot];
      spinUntilFree(slot, deadline, 'download', timeoutMs);
      throwIfStreamFailed(stream);
      drainNow(sink, p.offset, placedView(slot, p.bytes), deadline);
      if (i + slots.length < pieces.length) receivePiece(src, pieces[i + slots.length], slots, stream);
    }
  } finally {
    unlease(slots);
  }
}

/** {@link downloadSync} that waits for each piece without blocking the event loop. */
export async function downloadAsync(
  src: bigint,
  bytes: number,
  drain: Drain | DeferredDrain,
  timeoutMs = 120_000,
): Promise<void> {
  if (bytes === 0) return;
  const stream = currentStream();
  const rt = cuda();
  const { slots, pieces } = leaseFor(bytes, stream.handle, 'download');
  if (slots.length === 0) {
    // No chunk free: wait for the stream's earlier work, then one pageable copy.
    const done = new CudaEvent().record(stream);
    try {
      await done.wait(timeoutMs);
    } finally {
      done.dispose();
    }
    throwIfStreamFailed(stream.handle);
    const tmp = new Uint8Array(bytes);
    rt.cudaMemcpyAsync(tmp, src, bytes, MemcpyKind.DeviceToHost, stream.handle);
    rt.cudaStreamSynchronize(stream.handle);
    drainNow(madeNow(drain), 0, tmp, performance.now() + timeoutMs);
    return;
  }
  try {
    for (let i = 0; i < Math.min(slots.length, pieces.length); i++) {
      const busy = awaitFree(slots[pieces[i].slot], timeoutMs, 'download');
      if (busy) await busy;
      receivePiece(src, pieces[i], slots, stream.handle);
    }
    const sink = madeNow(drain);
    const turns = new Turns(timeoutMs, 'download');
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const slot = slots[p.slot];
      const turn = turns.next(slot);
      if (turn) await turn;
      throwIfStreamFailed(stream.handle);
      // One piece's drain (at most a chunk, ~0.1 ms on the helper threads) runs here.
      drainNow(sink, p.offset, placedView(slot, p.bytes), performance.now() + timeoutMs);
      if (i + slots.length < pieces.length) receivePiece(src, pieces[i + slots.length], slots, stream.handle);
    }
  } finally {
    unlease(slots);
  }
}
