// Host copies by address (libc memcpy through koffi) and the parallel form that splits a
// large copy between this thread and libuv's thread pool: every byte lands where it
// belongs, for plain and SharedArrayBuffer-backed arrays, at odd offsets and lengths.
import { describe, expect, it } from 'vitest';
import { MIN_SLICE_BYTES, addressOf, copyBytes, copyBytesParallel, sliceCount } from '../../src/tensor/host-copy.ts';

const MiB = 1 << 20;

/** Bytes that differ at every position within a 251-byte period (a slice off by one shows). */
function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 7 + seed) % 251;
  return out;
}

function firstMismatch(a: Uint8Array, b: Uint8Array): number {
  expect(a.byteLength).toBe(b.byteLength);
  return a.findIndex((v, i) => v !== b[i]);
}

describe('host copies', () => {
  it('cuts a copy into slices of at least MIN_SLICE_BYTES, at most one per thread', () => {
    expect(sliceCount(0, 4)).toBe(1);
    expect(sliceCount(MIN_SLICE_BYTES * 2 - 1, 4)).toBe(1);
    expect(sliceCount(MIN_SLICE_BYTES * 2, 4)).toBe(2);
    expect(sliceCount(64 * MiB, 4)).toBe(4);
    expect(sliceCount(64 * MiB, 1)).toBe(1);
  });

  it('addressOf gives the backing store: a subarray is its byte offset further on', () => {
    const plain = new Uint8Array(MiB);
    const shared = new Uint8Array(new SharedArrayBuffer(MiB));
    for (const a of [plain, shared]) {
      expect(addressOf(a)).toBeGreaterThan(0);
      expect(addressOf(a.subarray(12345)) - addressOf(a)).toBe(12345);
      expect(addressOf(a)).toBe(addressOf(a));
    }
  });

  it('copyBytes copies small and large arrays, plain and shared, at odd offsets', () => {
    for (const bytes of [0, 1, 4095, 16 << 10, (1 << 20) + 3]) {
      const src = pattern(bytes + 5, bytes).subarray(5);
      const dst = new Uint8Array(new SharedArrayBuffer(bytes + 9)).subarray(9);
      copyBytes(dst, src);
      expect(firstMismatch(dst, src)).toBe(-1);
      const back = new Uint8Array(bytes);
      copyBytes(back, dst);
      expect(firstMismatch(back, src)).toBe(-1);
    }
  });

  it('copyBytesParallel moves every byte of large copies, into fresh and shared memory, at odd sizes', async () => {
    for (const bytes of [MIN_SLICE_BYTES * 2, 4 * MiB + 4097, 33 * MiB - 1]) {
      const src = pattern(bytes + 3, 11).subarray(3);
      const fresh = new Uint8Array(bytes);
      await copyBytesParallel(fresh, src);
      expect(firstMismatch(fresh, src)).toBe(-1);
      const shared = new Uint8Array(new SharedArrayBuffer(bytes + 1)).subarray(1);
      await copyBytesParallel(shared, fresh);
      expect(firstMismatch(shared, src)).toBe(-1);
    }
  });

  it('copies in flight together on the thread pool each complete', async () => {
    const srcs = [1, 2, 3].map((s) => pattern(3 * MiB, s));
    const dsts = srcs.map((s) => new Uint8Array(s.byteLength));
    await Promise.all(srcs.map((s, i) => copyBytesParallel(dsts[i], s)));
    for (const [i, s] of srcs.entries()) expect(firstMismatch(dsts[i], s)).toBe(-1);
  });
});
