/**
 * vLLM's shared-memory MessageQueue (device_communicators/shm_broadcast.py): one writer, N readers. Readers on
 * the writer's node read a ring of chunks in shared memory (./mq-ring.ts): a
 * SharedArrayBuffer when they are threads of the writer's process, a /dev/shm segment
 * mapped through koffi otherwise. Messages past the chunk size leave a marker in the
 * ring and travel over a TCP socket from the writer to each reader, as do all messages
 * to readers on other nodes. Objects are node:v8 serialized (structured clone types).
 *
 * Waiting: a reader (or a writer facing a full ring) spins for 30 µs, polls on
 * setImmediate turns (yielding the CPU each turn) for `spinMs` (default 2 ms), then sleeps on the ring's counter word (Atomics.waitAsync or
 * futex) in slices, so an idle reader costs nothing and a busy one reacts in µs.
 *
 * Differences from vLLM, each deliberate:
 * - Every wait has a deadline: a full ring names the readers that have not read the
 *   oldest block (QueueTimeoutError), instead of warning "No available shared memory
 *   broadcast block found in 60 seconds" forever. The warning is still logged.
 * - A reader or writer that dies is noticed through its socket: the peers' pending and
 *   later operations reject with RankFailedError; an orderly close gives GroupClosedError.
 * - The /dev/shm name is unlinked once every local reader has mapped it, so nothing is
 *   left behind by a crash after the handshake.
 */
import type { Server } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { deserialize, serialize } from 'node:v8';
import { BroadcastChannel, threadId } from 'node:worker_threads';
import { nanoid } from 'nanoid';
import { setting } from '../env.ts';
import { GroupClosedError, InvalidArgumentError, QueueTimeoutError, RankFailedError } from '../errors.ts';
import { log } from '../log.ts';
import type { StatelessProcessGroup } from '../store/index.ts';
import { connectBy, Frame, FrameSocket, listenOn, receiveHello, sendHello } from '../net/index.ts';
import { BLOCK_HEADER, BlockKind, Ring, RingLayout } from './mq-ring.ts';
import { ShmSegment, nodeKey, yieldCpu } from './shm.ts';

/** Options of {@link MessageQueue.createFromGroup}. */
export interface MessageQueueOptions {
  /** Deadline of the handshake and default deadline of enqueue/dequeue, in ms. Default 120 000. */
  timeoutMs?: number;
  /** When it fires, pending and later operations reject (RankFailedError if that is the reason). */
  abortSignal?: AbortSignal;
  /** Global rank of each group rank, for error messages. Default: the group ranks. */
  ranks?: readonly number[];
  /** Name used in errors and logs. */
  name?: string;
  /**
   * Shared memory for local readers: `sab` (threads of one process) or `shm`. Default: `sab` when
   * every local reader is in the writer's process.
   */
  transport?: 'sab' | 'shm';
  /** Address remote readers connect to. Default: the writer's first non-internal IPv4 address. */
  connectIp?: string;
  /** Which node this rank is on; ranks with equal keys share memory. Default: host name + GPUGROUP_NODE_ID. */
  nodeKey?: string;
  /** How long a waiter polls before it sleeps, in ms. Default GPUGROUP_MQ_SPIN_MS or 2. */
  spinMs?: number;
  /** A waiter logs a warning this often while it waits, in ms. Default 60 000. */
  warnIntervalMs?: number;
}

interface Peer {
  node: string;
  host: string;
  pid: number;
  threadId: number;
}

/** What the writer broadcasts to the readers. */
interface QueueHandle {
  id: string;
  chunkBytes: number;
  chunks: number;
  localReaders: number[];
  remoteReaders: number[];
  transport: 'sab' | 'shm' | null;
  path: string | null;
  host: string;
  address: string;
  port: number;
}

const SLEEP_SLICE_MS = 100;
const SYNC_SPIN_MS = 0.03;
/** Bytes a socket may hold unsent before enqueue waits for it to drain. */
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** One writer, N readers; see the file comment. */
export class MessageQueue {
  readonly name: string;
  /** Group rank of the writer. */
  readonly writerRank: number;
  /** This rank's group rank. */
  readonly rank: number;
  readonly isWriter: boolean;
  /** Group ranks that read from shared memory (the writer's node). */
  readonly localReaders: readonly number[];
  /** Group ranks that read over sockets (other nodes). */
  readonly remoteReaders: readonly number[];
  readonly transport: 'sab' | 'shm' | null;
  private readonly timeoutMs: number;
  private readonly spinMs: number;
  private readonly warnIntervalMs: number;
  private readonly ranks: readonly number[];
  private ring: Ring | null = null;
  private segment: ShmSegment | null = null;
  private readerIndex = -1;
  /** Next block this rank writes or reads. */
  private block = 0;
  /** Messages this rank has enqueued or dequeued. */
  private count = 0;
  /** Writer: a socket per reader; reader: the socket to the writer (key writerRank). */
  private readonly sockets = new Map<number, FrameSocket>();
  private failure: Error | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly abortSignal: AbortSignal | undefined;
  private readonly onAbort = (): void => {
    const reason: unknown = this.abortSignal?.reason;
    this.fail(
      reason instanceof RankFailedError
        ? reason
        : new GroupClosedError(
            `message queue '${this.name}' was aborted: ${reason instanceof Error ? reason.message : String(reason)}`,
          ),
    );
  };

  private constructor(
    group: StatelessProcessGroup,
    writerRank: number,
    handle: QueueHandle,
    opts: MessageQueueOptions,
  ) {
    this.name = opts.name ?? `mq:${handle.id}`;
    this.writerRank = writerRank;
    this.rank = group.rank;
    this.isWriter = group.rank === writerRank;
    this.localReaders = handle.localReaders;
    this.remoteReaders = handle.remoteReaders;
    this.transport = handle.transport;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.spinMs = opts.spinMs ?? setting('GPUGROUP_MQ_SPIN_MS');
    this.warnIntervalMs = opts.warnIntervalMs ?? 60_000;
    this.ranks = opts.ranks ?? Array.from({ length: group.worldSize }, (_, i) => i);
    this.abortSignal = opts.abortSignal;
  }

  /**
   * Collective over `group`: the writer (group rank `writerRank`) creates the ring and
   * its socket server, the readers attach, and everyone returns once every reader is
   * connected (the ready handshake). `chunkBytes` bounds a message that goes through
   * shared memory; `chunks` is the ring's depth.
   */
  static async createFromGroup(
    group: StatelessProcessGroup,
    chunkBytes: number,
    chunks: number,
    writerRank = 0,
    opts: MessageQueueOptions = {},
  ): Promise<MessageQueue> {
    if (!Number.isInteger(chunkBytes) || chunkBytes <= BLOCK_HEADER)
      throw new InvalidArgumentError('chunkBytes', `must be an integer > ${BLOCK_HEADER}, got ${chunkBytes}`);
    if (!Number.isInteger(chunks) || chunks < 1)
      throw new InvalidArgumentError('chunks', `must be a positive integer, got ${chunks}`);
    if (!Number.isInteger(writerRank) || writerRank < 0 || writerRank >= group.worldSize) {
      throw new InvalidArgumentError(
        'writerRank',
        `must be a group rank in [0, ${group.worldSize}), got ${writerRank}`,
      );
    }
    if (opts.timeoutMs !== undefined && !(opts.timeoutMs > 0))
      throw new InvalidArgumentError('timeoutMs', `must be positive, got ${opts.timeoutMs}`);
    if (opts.ranks && opts.ranks.length !== group.worldSize)
      throw new InvalidArgumentError('ranks', `needs ${group.worldSize} entries, got ${opts.ranks.length}`);
    opts.abortSignal?.throwIfAborted();
    const me: Peer = { node: opts.nodeKey ?? nodeKey(), host: hostname(), pid: process.pid, threadId };
    const peers = await group.allGatherObj(me);
    const deadline = performance.now() + (opts.timeoutMs ?? 120_000);
    return group.rank === writerRank
      ? MessageQueue.createWriter(group, chunkBytes, chunks, writerRank, peers, deadline, opts)
      : MessageQueue.createReader(group, writerRank, peers, deadline, opts);
  }

  private static async createWriter(
    group: StatelessProcessGroup,
    chunkBytes: number,
    chunks: number,
    writerRank: number,
    peers: Peer[],
    deadline: number,
    opts: MessageQueueOptions,
  ): Promise<MessageQueue> {
    const localReaders: number[] = [];
    const remoteReaders: number[] = [];
    peers.forEach((p, r) => {
      if (r !== writerRank) (p.node === peers[writerRank].node ? localReaders : remoteReaders).push(r);
    });
    const oneProcess = localReaders.every((r) => peers[r].pid === process.pid);
    const transport = localReaders.length === 0 ? null : (opts.transport ?? (oneProcess ? 'sab' : 'shm'));
    if (transport === 'sab' && !oneProcess)
      throw new InvalidArgumentError('transport', `'sab' needs every local reader in the writer's process; use 'shm'`);
    const id = nanoid(10);
    const layout = new RingLayout(chunkBytes, chunks, localReaders.length);
    let channel: BroadcastChannel | null = null;
    let segment: ShmSegment | null = null;
    let buffer: ArrayBufferLike | null = null;
    if (transport === 'sab') {
      buffer = new SharedArrayBuffer(layout.totalBytes);
      // Threads get the buffer through a channel (structured clone shares a SAB); each
      // reader asks once, and the answer reaches every reader listening.
      channel = new BroadcastChannel(`gpugroup-mq:${id}`);
      const shared = buffer;
      channel.onmessage = (e: unknown) => {
        if ((e as { data: { hello?: number } }).data.hello !== undefined) channel?.postMessage({ buffer: shared });
      };
    } else if (transport === 'shm') {
      segment = ShmSegment.create(layout.totalBytes, ShmSegment.pathFor(`mq-${id}`));
      buffer = segment.buffer;
    }
    let server: Server | null = null;
    const q = new MessageQueue(
      group,
      writerRank,
      {
        id,
        chunkBytes,
        chunks,
        localReaders,
        remoteReaders,
        transport,
        path: segment?.path ?? null,
        host: hostname(),
        address: '',
        port: 0,
      },
      opts,
    );
    if (buffer) q.ring = new Ring(buffer, segment?.address ?? null, layout);
    q.segment = segment;
    try {
      const listening = await listenOn(remoteReaders.length > 0 ? '0.0.0.0' : '127.0.0.1');
      server = listening.server;
      const port = listening.port;
      // Nobody can connect before the port is broadcast below.
      const connected = q.acceptReaders(server, [...localReaders, ...remoteReaders], deadline);
      connected.catch(() => undefined); // awaited below; a failure before that is reported there
      const address = remoteReaders.length > 0 ? (opts.connectIp ?? externalAddress()) : '127.0.0.1';
      await group.broadcastObj<QueueHandle>(
        {
          id,
          chunkBytes,
          chunks,
          localReaders,
          remoteReaders,
          transport,
          path: segment?.path ?? null,
          host: hostname(),
          address,
          port,
        },
        writerRank,
      );
      await connected;
      for (const s of q.sockets.values()) s.send(Frame.Ready);
      q.listen();
      return q;
    } catch (err) {
      await q.close();
      throw err;
    } finally {
      // Every local reader has mapped the ring (or the handshake failed): the name can go.
      segment?.unlink();
      channel?.close();
      server?.close();
    }
  }

  private static async createReader(
    group: StatelessProcessGroup,
    writerRank: number,
    peers: Peer[],
    deadline: number,
    opts: MessageQueueOptions,
  ): Promise<MessageQueue> {
    const handle = await group.broadcastObj<QueueHandle>(null, writerRank);
    const q = new MessageQueue(group, writerRank, handle, opts);
    try {
      q.readerIndex = handle.localReaders.indexOf(group.rank);
      if (q.readerIndex >= 0) await q.mapRing(handle, deadline);
      const host = peers[writerRank].host === hostname() ? '127.0.0.1' : handle.address;
      const socket = await connectBy(host, handle.port, deadline, () =>
        q.timeout('ready', [writerRank], `cannot reach the writer at ${host}:${handle.port}`),
      );
      const fs = new FrameSocket(socket, (orderly) => q.fail(q.peerGone(writerRank, orderly)));
      q.sockets.set(writerRank, fs);
      sendHello(fs, group.rank);
      const ready = await fs.next(deadline, () =>
        q.timeout('ready', [writerRank], 'the writer did not confirm the handshake'),
      );
      if (ready.type !== Frame.Ready)
        throw new GroupClosedError(`message queue '${q.name}': unexpected frame ${ready.type} in the handshake`);
      q.listen();
      return q;
    } catch (err) {
      await q.close();
      throw err;
    }
  }

  /** Reader: maps the writer's ring (opens the /dev/shm file, or asks for the SharedArrayBuffer). */
  private async mapRing(handle: QueueHandle, deadline: number): Promise<void> {
    const layout = new RingLayout(handle.chunkBytes, handle.chunks, handle.localReaders.length);
    if (handle.transport === 'shm') {
      this.segment = ShmSegment.open(handle.path!, layout.totalBytes);
      this.ring = new Ring(this.segment.buffer, this.segment.address, layout);
      return;
    }
    const channel = new BroadcastChannel(`gpugroup-mq:${handle.id}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      const buffer = await new Promise<SharedArrayBuffer>((resolve, reject) => {
        channel.onmessage = (e: unknown) => {
          const data = (e as { data: { buffer?: SharedArrayBuffer } }).data;
          if (data.buffer) resolve(data.buffer);
        };
        timer = setTimeout(
          () => reject(this.timeout('ready', [this.writerRank], 'the writer did not share its ring')),
          Math.max(0, deadline - performance.now()),
        );
        channel.postMessage({ hello: this.rank });
      });
      this.ring = new Ring(buffer, null, layout);
    } finally {
      clearTimeout(timer);
      channel.close();
    }
  }

  /** Writer: resolves once every reader has connected and said hello. */
  private acceptReaders(server: Server, expected: number[], deadline: number): Promise<void> {
    if (expected.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          const missing = expected.filter((r) => !this.sockets.has(r));
          reject(this.timeout('ready', missing, `reader(s) ${this.describe(missing)} did not connect`));
        },
        Math.max(0, deadline - performance.now()),
      );
      this.handshakeTimer = timer;
      server.on('connection', (socket) => {
        let rank = -1;
        const fs = new FrameSocket(socket, (orderly) => {
          const err = this.peerGone(rank, orderly);
          // Only a reader that completed the handshake fails the queue.
          return this.sockets.get(rank) === fs ? this.fail(err) : err;
        });
        receiveHello(fs, deadline, () => this.timeout('ready', [], 'a connection did not say hello')).then(
          (hello) => {
            if (hello === null || !expected.includes(hello) || this.sockets.has(hello)) {
              fs.close(new GroupClosedError('unexpected connection'));
              return;
            }
            rank = hello;
            this.sockets.set(rank, fs);
            if (this.sockets.size === expected.length) {
              clearTimeout(timer);
              resolve();
            }
          },
          () => fs.close(new GroupClosedError('handshake failed')),
        );
      });
    });
  }

  /** After the handshake: watch the abort signal. */
  private listen(): void {
    if (this.abortSignal?.aborted) this.onAbort();
    else this.abortSignal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /**
   * Writer: sends `obj` to every reader. Resolves once it is in the ring (or on the
   * sockets); waits while the ring is full, up to `timeoutMs`, then rejects with
   * QueueTimeoutError naming the readers that have not read the oldest block.
   */
  enqueue(obj: unknown, timeoutMs = this.timeoutMs): Promise<void> {
    if (!this.isWriter)
      return Promise.reject(
        new InvalidArgumentError(
          'rank',
          `only the writer (group rank ${this.writerRank}) can enqueue on '${this.name}'`,
        ),
      );
    // Serialized now: later changes to `obj` do not leak into the message.
    const bytes = serialize(obj);
    const deadline = performance.now() + timeoutMs;
    const run = this.tail.then(() => this.write(bytes, deadline, timeoutMs));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Reader: the next message, in the order enqueued; rejects with QueueTimeoutError after `timeoutMs`. */
  dequeue<T = unknown>(timeoutMs = this.timeoutMs): Promise<T> {
    if (this.isWriter)
      return Promise.reject(
        new InvalidArgumentError('rank', `Only readers can dequeue ('${this.name}' is written by this rank)`),
      );
    const deadline = performance.now() + timeoutMs;
    const run = this.tail.then(() => this.read(deadline, timeoutMs)) as Promise<T>;
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** vLLM's broadcast_object: the writer enqueues `obj` and returns it; readers dequeue. */
  async broadcastObject<T>(obj?: T, timeoutMs = this.timeoutMs): Promise<T> {
    if (!this.isWriter) return this.dequeue<T>(timeoutMs);
    await this.enqueue(obj, timeoutMs);
    return obj as T;
  }

  private async write(bytes: Buffer, deadline: number, timeoutMs: number): Promise<void> {
    this.throwIfFailed();
    const n = this.count++;
    const ring = this.ring;
    const inline = bytes.length + BLOCK_HEADER <= (ring?.layout.chunkBytes ?? 0);
    if (ring) {
      const block = this.block;
      await this.waitFor(
        () => ring.writable(block),
        'room',
        deadline,
        () => {
          const stuck = ring.unreadBy(block).map((j) => this.localReaders[j]);
          return this.timeout(
            'enqueue',
            stuck,
            `no free block for message #${n}: reader(s) ${this.describe(stuck)} have not read message #${n - ring.layout.chunks}`,
            timeoutMs,
          );
        },
      );
      ring.write(block, inline ? BlockKind.Inline : BlockKind.Overflow, inline ? bytes : null);
      this.block = (block + 1) % ring.layout.chunks;
    }
    const viaSocket = inline ? this.remoteReaders : [...this.localReaders, ...this.remoteReaders];
    for (const r of viaSocket) this.sockets.get(r)!.send(Frame.Data, bytes);
    // Resolved only once every byte is in the kernel: the caller may block this thread
    // next (a blocking NCCL call that waits for the readers), and bytes left in user space
    // would wait for this thread's event loop while the readers wait for them.
    for (const r of viaSocket) {
      const s = this.sockets.get(r)!;
      if (s.backlog > 0)
        await s.drained(deadline, () =>
          this.timeout('enqueue', [r], `reader ${this.describe([r])} does not take its socket messages`, timeoutMs),
        );
    }
  }

  // No failure check up front: what the writer published before it went away can still be read.
  private async read(deadline: number, timeoutMs: number): Promise<unknown> {
    const n = this.count++;
    const ring = this.ring;
    const socket = this.sockets.get(this.writerRank)!;
    const late = () =>
      this.timeout(
        'dequeue',
        [this.writerRank],
        `no message #${n} from the writer ${this.describe([this.writerRank])}`,
        timeoutMs,
      );
    if (ring) {
      const block = this.block;
      const j = this.readerIndex;
      await this.waitFor(() => ring.readable(block, j), 'message', deadline, late);
      const { kind, payload } = ring.read(block);
      ring.release(block, j);
      this.block = (block + 1) % ring.layout.chunks;
      if (kind === BlockKind.Inline) return deserialize(payload);
    }
    const frame = await socket.next(deadline, late);
    return deserialize(frame.body);
  }

  /** Polls for `spinMs`, then sleeps on the ring's counter in slices until `ready()` or the deadline. */
  private async waitFor(
    ready: () => boolean,
    which: 'message' | 'room',
    deadline: number,
    onTimeout: () => Error,
  ): Promise<void> {
    if (ready()) return;
    const ring = this.ring!;
    const start = performance.now();
    // A few µs of synchronous spinning catch a message already on its way, without
    // the cost of an event-loop turn.
    const spinEnd = start + SYNC_SPIN_MS;
    while (performance.now() < spinEnd) if (ready()) return;
    const pollEnd = Math.min(deadline, start + this.spinMs);
    while (performance.now() < pollEnd) {
      yieldCpu();
      await immediate();
      this.throwIfFailed();
      if (ready()) return;
    }
    let warnAt = start + this.warnIntervalMs;
    for (;;) {
      this.throwIfFailed();
      const now = performance.now();
      if (now >= deadline) throw onTimeout();
      if (now >= warnAt) {
        warnAt += this.warnIntervalMs;
        log(
          'warn',
          'mq',
          `'${this.name}': ${which === 'room' ? 'no free block' : 'no message'} for ` +
            `${((now - start) / 1000).toFixed(0)} s (deadline in ${((deadline - now) / 1000).toFixed(0)} s)`,
        );
      }
      ring.sleepers(which, 1);
      try {
        const seen = which === 'message' ? ring.published : ring.released;
        if (ready()) return;
        await ring.sleep(which, seen, Math.min(deadline - now, SLEEP_SLICE_MS));
      } finally {
        ring.sleepers(which, -1);
      }
      if (ready()) return;
    }
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Fails every pending and later operation with `err` (first error wins) and wakes sleepers. */
  private fail(err: Error): Error {
    if (this.failure) return this.failure;
    this.failure = err;
    this.ring?.wakeAll();
    for (const s of this.sockets.values()) s.fail(err);
    return err;
  }

  private peerGone(groupRank: number, orderly: boolean): Error {
    const who =
      groupRank === this.writerRank
        ? `the writer ${this.describe([groupRank])}`
        : `reader ${this.describe([groupRank])}`;
    if (orderly) return new GroupClosedError(`message queue '${this.name}': ${who} closed the queue`);
    return new RankFailedError(
      this.ranks[groupRank] ?? groupRank,
      null,
      null,
      `message queue '${this.name}' lost ${who} (connection dropped)`,
    );
  }

  private timeout(
    op: 'enqueue' | 'dequeue' | 'ready',
    waitingFor: number[],
    detail: string,
    timeoutMs = this.timeoutMs,
  ): QueueTimeoutError {
    return new QueueTimeoutError(this.name, op, waitingFor, timeoutMs, detail);
  }

  /** `group rank 2 (rank 6)` for a list of group ranks. */
  private describe(groupRanks: number[]): string {
    return groupRanks.map((r) => `group rank ${r} (rank ${this.ranks[r] ?? r})`).join(', ') || '(none)';
  }

  /** Closes the sockets, unmaps the ring and rejects what is pending. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.handshakeTimer);
      this.abortSignal?.removeEventListener('abort', this.onAbort);
      const closed = new GroupClosedError(`message queue '${this.name}' was closed`);
      for (const s of this.sockets.values()) s.close(closed);
      this.fail(closed);
      // Every operation touches the mapping until it settles (a woken sleep still reads
      // the ring on its way out): unmap only after the last one.
      await this.tail;
      this.segment?.unlink();
      this.segment?.unmap();
    })();
    return this.closing;
  }
}

/** The first non-internal IPv4 address of this host (what a reader on another node dials). */
function externalAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return hostname();
}
