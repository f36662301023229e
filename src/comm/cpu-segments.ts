/**
 * The shared memory of one CPU communicator: one segment per rank, mapped by every
 * rank, with the same layout in both transports.
 *
 * - `sab`: all ranks are threads of one process. Each rank allocates a
 *   SharedArrayBuffer and the ranks exchange them once through a node:worker_threads
 *   BroadcastChannel named after the group (structured clone shares a SAB, it does not
 *   copy it). Sleeps are Atomics.waitAsync, wakes Atomics.notify.
 * - `shm`: ranks in several processes. Each rank creates /dev/shm/gpugroup-<pid>-<id>,
 *   every rank maps every file (koffi mmap), and each owner unlinks its file as soon as
 *   everybody has mapped it. Sleeps are futex waits on the thread pool, wakes FUTEX_WAKE.
 *
 * Every counter word the ranks wait on is followed by a "sleepers" word: a waiter
 * increments it before sleeping, so a writer makes the (costly) wake call only when
 * somebody sleeps. Both are sequentially consistent Atomics, so either the writer sees
 * the sleeper or the sleeper's re-check sees the new value.
 */
import { hostname } from 'node:os';
import { BroadcastChannel, threadId } from 'node:worker_threads';
import { nanoid } from 'nanoid';
import { CollectiveTimeoutError, InvalidArgumentError } from '../errors.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import type { StorageArray } from '../tensor/index.ts';
import { CALL_WORDS } from './op-call.ts';
import { SharedWords } from './shared-words.ts';
import { ShmSegment } from './shm.ts';

/** How ranks share memory: SharedArrayBuffers between threads, or /dev/shm between processes. */
export type CpuTransport = 'sab' | 'shm';

type ArrayCtor = new (buffer: ArrayBufferLike, byteOffset?: number, length?: number) => StorageArray;

/** Word indexes of a segment's header (int32). Each counter is followed by its sleepers word. */
export const W = {
  /** Collective rounds this rank has posted data for. */
  posted: 0,
  /** Collective rounds this rank has finished reading. */
  done: 2,
  /** Signature of the collective whose data sits in half 0 / half 1. */
  sig: 4,
  /** Chunks this rank has sent to peer p: p2pBase + 4p; chunks consumed from p: p2pBase + 4p + 2. */
  p2pBase: 8,
} as const;

/** Byte sizes of a segment's parts; the same on every rank of a communicator. */
export class SegmentLayout {
  readonly headerBytes: number;
  /** Word index of the first recorded call (see callWord, p2pCallWord). */
  private readonly callsAt: number;
  /** Byte offset of collective half h: halfAt(h). */
  readonly halvesAt: number;
  /** Byte offset of the p2p slots. */
  readonly p2pAt: number;
  readonly totalBytes: number;

  constructor(
    readonly worldSize: number,
    readonly halfBytes: number,
    readonly p2pSlotBytes: number,
  ) {
    // Counters, then a total-bytes word per (peer, slot) for the p2p size check, then
    // the calls behind each half and each p2p slot, for errors that name both sides.
    this.callsAt = W.p2pBase + 4 * worldSize + 2 * worldSize;
    this.headerBytes = align((this.callsAt + (2 + 2 * worldSize) * CALL_WORDS) * 4, 64);
    this.halvesAt = this.headerBytes;
    this.p2pAt = this.halvesAt + 2 * halfBytes;
    this.totalBytes = this.p2pAt + 2 * worldSize * p2pSlotBytes;
  }

  halfAt(h: number): number {
    return this.halvesAt + h * this.halfBytes;
  }

  /** Slot `slot` (0/1) of the writer's channel to `peer`. */
  p2pSlotAt(peer: number, slot: number): number {
    return this.p2pAt + (2 * peer + slot) * this.p2pSlotBytes;
  }

  /** Words of the call whose data sits in collective half `h`. */
  callWord(h: number): number {
    return this.callsAt + h * CALL_WORDS;
  }

  /** Words of the call whose message sits in slot `slot` of the channel to `peer`. */
  p2pCallWord(peer: number, slot: number): number {
    return this.callsAt + (2 + 2 * peer + slot) * CALL_WORDS;
  }

  /** Word holding the total bytes of the message in slot `slot` of the channel to `peer`. */
  p2pBytesWord(peer: number, slot: number): number {
    return W.p2pBase + 4 * this.worldSize + 2 * peer + slot;
  }
}

/** One rank's segment as this rank sees it. */
export class Region extends SharedWords {
  readonly bytes: Uint8Array;
  private readonly views = new Map<ArrayCtor, StorageArray>();

  constructor(
    readonly buffer: ArrayBufferLike,
    address: bigint | null,
    layout: SegmentLayout,
  ) {
    super(buffer, address, layout.headerBytes / 4);
    this.bytes = new Uint8Array(buffer, 0, layout.totalBytes);
  }

  /** A typed view over the whole segment (element i at byte i × itemsize), created once. */
  view(ctor: ArrayCtor, itemsize: number): StorageArray {
    let v = this.views.get(ctor);
    if (!v) {
      v = new ctor(this.buffer, 0, Math.floor(this.bytes.length / itemsize));
      this.views.set(ctor, v);
    }
    return v;
  }
}

function noop(): void {}

/** Options of {@link Segments.create}. */
export interface SegmentOptions {
  group: StatelessProcessGroup;
  groupName: string;
  transport?: CpuTransport;
  halfBytes: number;
  p2pSlotBytes: number;
  timeoutMs: number;
}

interface Peer {
  pid: number;
  threadId: number;
  host: string;
  id: string;
}

/** Every rank's segment of one communicator, mapped into this rank. */
export class Segments {
  /** Every rank runs on this very thread (tests): a waiter must yield for peers to progress. */
  sameThread = false;
  private closed = false;
  private readonly sleeping = new Set<Promise<void>>();

  private constructor(
    readonly transport: CpuTransport,
    readonly layout: SegmentLayout,
    readonly regions: Region[],
    private readonly owned: ShmSegment[],
  ) {}

  /** Collective over `group`: allocates this rank's segment and maps every peer's. */
  static async create(opts: SegmentOptions): Promise<Segments> {
    const { group } = opts;
    const layout = new SegmentLayout(group.worldSize, opts.halfBytes, opts.p2pSlotBytes);
    const me: Peer = { pid: process.pid, threadId, host: hostname(), id: nanoid(12) };
    const peers = await group.allGatherObj(me);
    const hosts = new Set(peers.map((p) => p.host));
    if (hosts.size > 1) {
      throw new InvalidArgumentError(
        'group',
        `the CPU communicator of '${opts.groupName}' shares memory, so its ranks must be on one host; they are on ${[...hosts].join(', ')}`,
      );
    }
    const oneProcess = peers.every((p) => p.pid === peers[0].pid);
    const transport = opts.transport ?? (oneProcess ? 'sab' : 'shm');
    if (transport === 'sab' && !oneProcess) {
      throw new InvalidArgumentError(
        'transport',
        `'sab' needs every rank of '${opts.groupName}' in one process (threads); they run in ` +
          `${new Set(peers.map((p) => p.pid)).size} processes: use 'shm'`,
      );
    }
    const segments =
      transport === 'sab'
        ? await Segments.exchangeBuffers(opts, layout, peers)
        : await Segments.mapFiles(opts, layout, peers);
    segments.sameThread = oneProcess && peers.every((p) => p.threadId === peers[0].threadId);
    return segments;
  }

  private static async exchangeBuffers(opts: SegmentOptions, layout: SegmentLayout, peers: Peer[]): Promise<Segments> {
    const { group } = opts;
    const mine = new SharedArrayBuffer(layout.totalBytes);
    const buffers: (SharedArrayBuffer | undefined)[] = new Array(group.worldSize);
    buffers[group.rank] = mine;
    let received = 1;
    let arrived: () => void = noop;
    const all = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    // Rank 0's id names the channel: unique to this creation, shared by its ranks.
    const channel = new BroadcastChannel(`gpugroup-cpu:${peers[0].id}`);
    channel.onmessage = (e: unknown) => {
      const { rank, buffer } = (e as { data: { rank: number; buffer: SharedArrayBuffer } }).data;
      if (buffers[rank] === undefined) received++;
      buffers[rank] = buffer;
      if (received === group.worldSize) arrived();
    };
    let timer: NodeJS.Timeout | undefined;
    try {
      // Messages reach only channels open when they are posted: post after everyone opened.
      await group.barrier();
      channel.postMessage({ rank: group.rank, buffer: mine });
      if (received < group.worldSize) {
        await Promise.race([
          all,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new CollectiveTimeoutError(opts.groupName, 'create', 0, opts.timeoutMs, [])),
              opts.timeoutMs,
            );
          }),
        ]);
      }
      await group.barrier();
    } finally {
      clearTimeout(timer);
      channel.close();
    }
    const regions = buffers.map((b) => new Region(b!, null, layout));
    return new Segments('sab', layout, regions, []);
  }

  private static async mapFiles(opts: SegmentOptions, layout: SegmentLayout, peers: Peer[]): Promise<Segments> {
    const { group } = opts;
    const mapped: ShmSegment[] = [];
    const mine = ShmSegment.create(layout.totalBytes, ShmSegment.pathFor(peers[group.rank].id));
    try {
      await group.barrier();
      const segments = peers.map((p, r) => {
        if (r === group.rank) return mine;
        const s = ShmSegment.open(ShmSegment.pathFor(p.id, p.pid), layout.totalBytes);
        mapped.push(s);
        return s;
      });
      // Everyone has mapped everything: the names can go, so nothing outlives a crash.
      await group.barrier();
      mine.unlink();
      const regions = segments.map((s) => new Region(s.buffer, s.address, layout));
      return new Segments('shm', layout, regions, segments);
    } catch (err) {
      mine.unlink();
      mine.unmap();
      for (const s of mapped) s.unmap();
      throw err;
    }
  }

  /** Sleeps on region `r`'s counter `index`; tracked so {@link close} can wait for it. */
  sleep(r: number, index: number, expected: number, ms: number): Promise<void> {
    const p = this.regions[r].sleep(index, expected, ms);
    if (this.transport === 'sab') return p;
    this.sleeping.add(p);
    return p.finally(() => this.sleeping.delete(p));
  }

  /** Wakes every sleeper on every counter (abort, destroy). */
  wakeAll(): void {
    if (this.closed) return;
    for (const region of this.regions) {
      for (let i = 0; i < W.p2pBase + 4 * this.layout.worldSize; i += 2) region.wake(i);
    }
  }

  /**
   * Unlinks and unmaps (shm) or drops (sab) every segment, after the futex sleeps in
   * flight on the thread pool have returned: they hold addresses inside the mappings.
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.wakeAll();
    this.closed = true;
    while (this.sleeping.size > 0) await Promise.allSettled([...this.sleeping]);
    for (const s of this.owned) {
      s.unlink();
      s.unmap();
    }
  }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
