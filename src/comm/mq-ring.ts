/**
 * The MessageQueue's shared ring (shm_broadcast.py: ShmRingBuffer): `chunks` blocks of `chunkBytes`,
 * each with a written flag and one read flag per local reader, all int32 words so that
 * Atomics order them. Block states, written flag first: `0…` free; `1 00…` just
 * written; `1 mixed` partly read; `1 11…` read by all, writable again.
 *
 * Writer: wait until the block is free or read by all; set written = 0; fill the data;
 * set every read flag to 0; set written = 1. Resetting the read flags before setting
 * written means a reader never sees a stale "already read" on a fresh block.
 * Reader j: wait until written = 1 and read[j] = 0; read; set read[j] = 1.
 *
 * Two counters let waiters sleep instead of spinning: `published` (messages written;
 * readers sleep on it) and `released` (reads done; a writer facing a full ring sleeps
 * on it). Each is followed by its sleepers word (see SharedWords.publish).
 *
 * Layout: header words, then the flag words, then the data (64-byte aligned). A block
 * starts with two int32: the kind (inline or overflow) and the payload's byte count.
 */
import { SharedWords } from './shared-words.ts';

const PUBLISHED = 0;
const RELEASED = 2;
const HEADER_WORDS = 16;
/** Bytes before the payload inside a block. */
export const BLOCK_HEADER = 8;

/** What a block holds: the message itself, or a note that it went out of band. */
export const BlockKind = { Inline: 0, Overflow: 1 } as const;
export type BlockKind = (typeof BlockKind)[keyof typeof BlockKind];

/** Sizes of a ring; the same on the writer and every reader. */
export class RingLayout {
  readonly flagWords: number;
  readonly dataAt: number;
  readonly totalBytes: number;

  constructor(
    readonly chunkBytes: number,
    readonly chunks: number,
    readonly readers: number,
  ) {
    this.flagWords = HEADER_WORDS + chunks * (1 + readers);
    this.dataAt = Math.ceil((this.flagWords * 4) / 64) * 64;
    this.totalBytes = this.dataAt + chunks * chunkBytes;
  }
}

/** A ring mapped into this rank, seen as the writer or as local reader `reader`. */
export class Ring {
  private readonly shared: SharedWords;
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly ints: DataView;

  constructor(
    readonly buffer: ArrayBufferLike,
    address: bigint | null,
    readonly layout: RingLayout,
  ) {
    this.shared = new SharedWords(buffer, address, layout.flagWords);
    this.words = this.shared.words;
    this.bytes = new Uint8Array(buffer, 0, layout.totalBytes);
    this.ints = new DataView(buffer, 0, layout.totalBytes);
  }

  /** Messages published so far (the word readers sleep on). */
  get published(): number {
    return Atomics.load(this.words, PUBLISHED);
  }

  /** Reads released so far (the word a blocked writer sleeps on). */
  get released(): number {
    return Atomics.load(this.words, RELEASED);
  }

  private flag(block: number, slot: number): number {
    return HEADER_WORDS + block * (1 + this.layout.readers) + slot;
  }

  /** The writer may fill `block`: never written, or read by every reader. */
  writable(block: number): boolean {
    if (Atomics.load(this.words, this.flag(block, 0)) === 0) return true;
    for (let j = 0; j < this.layout.readers; j++) {
      if (Atomics.load(this.words, this.flag(block, 1 + j)) === 0) return false;
    }
    return true;
  }

  /** Local readers (by index) that have not read `block` yet. */
  unreadBy(block: number): number[] {
    const out: number[] = [];
    for (let j = 0; j < this.layout.readers; j++) {
      if (Atomics.load(this.words, this.flag(block, 1 + j)) === 0) out.push(j);
    }
    return out;
  }

  /** Writer: fills `block` with a message of `kind` and publishes it. */
  write(block: number, kind: BlockKind, payload: Uint8Array | null): void {
    const at = this.layout.dataAt + block * this.layout.chunkBytes;
    Atomics.store(this.words, this.flag(block, 0), 0);
    this.ints.setInt32(at, kind, true);
    this.ints.setInt32(at + 4, payload?.length ?? 0, true);
    if (payload) this.bytes.set(payload, at + BLOCK_HEADER);
    for (let j = 0; j < this.layout.readers; j++) Atomics.store(this.words, this.flag(block, 1 + j), 0);
    Atomics.store(this.words, this.flag(block, 0), 1);
    this.shared.publish(PUBLISHED, (Atomics.load(this.words, PUBLISHED) + 1) | 0);
  }

  /** Reader `reader` may read `block`: written, and not read by it yet. */
  readable(block: number, reader: number): boolean {
    return (
      Atomics.load(this.words, this.flag(block, 0)) === 1 &&
      Atomics.load(this.words, this.flag(block, 1 + reader)) === 0
    );
  }

  /** Reader: the block's kind and a copy of its payload (the block is reused once released). */
  read(block: number): { kind: BlockKind; payload: Buffer } {
    const at = this.layout.dataAt + block * this.layout.chunkBytes;
    const kind = this.ints.getInt32(at, true) as BlockKind;
    const size = this.ints.getInt32(at + 4, true);
    return { kind, payload: Buffer.from(this.bytes.subarray(at + BLOCK_HEADER, at + BLOCK_HEADER + size)) };
  }

  /** Reader `reader` is done with `block`; wakes a writer waiting for room. */
  release(block: number, reader: number): void {
    Atomics.store(this.words, this.flag(block, 1 + reader), 1);
    Atomics.add(this.words, RELEASED, 1);
    if (Atomics.load(this.words, RELEASED + 1) > 0) this.shared.wake(RELEASED);
  }

  /** Sleeps until a message is published (`message`) or a read released (`room`), or `ms` pass. */
  sleep(which: 'message' | 'room', seen: number, ms: number): Promise<void> {
    return this.shared.sleep(which === 'message' ? PUBLISHED : RELEASED, seen, ms);
  }

  /** Registers (+1) or unregisters (-1) a sleeper on the readers' or the writer's word. */
  sleepers(which: 'message' | 'room', delta: 1 | -1): void {
    Atomics.add(this.words, (which === 'message' ? PUBLISHED : RELEASED) + 1, delta);
  }

  /** Wakes every sleeper (close, abort). */
  wakeAll(): void {
    this.shared.wake(PUBLISHED);
    this.shared.wake(RELEASED);
  }
}
