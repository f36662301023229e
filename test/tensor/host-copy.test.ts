// Host copies by address (libc memcpy through koffi), split between this thread and its
// copy helper threads: every byte lands where it belongs, for plain and
// SharedArrayBuffer-backed arrays, at odd offsets and lengths, before and after the
// helpers are up, and a begun copy is complete once waited for.
import { afterAll, describe, expect, it } from 'vitest';
import {
  MIN_SLICE_BYTES,
  addressOf,
  beginCopy,
  copyBytes,
  copyHelpersReady,
  copyTunablesEnv,
  NON_TEMPORAL_COPY_BYTES,
  sliceCount,
  stopCopyHelpers,
} from '../../src/tensor/host-copy.ts';
import { TimeoutError } from '../../src/errors.ts';

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

  it('the helper threads start on the first large copy and report ready', async () => {
    copyBytes(new Uint8Array(4 * MiB), pattern(4 * MiB, 1)); // starts them; copies alone meanwhile
    expect(await copyHelpersReady()).toBe(5); // GPUGROUP_COPY_THREADS 6: five helpers and the caller
  });

  it('copyBytes moves every byte of large copies in slices, into fresh and shared memory, at odd sizes', async () => {
    await copyHelpersReady();
    for (const bytes of [MIN_SLICE_BYTES * 2, MIN_SLICE_BYTES * 2 + 1, 4 * MiB + 4097, 33 * MiB - 1]) {
      const src = pattern(bytes + 3, 11).subarray(3);
      const fresh = new Uint8Array(bytes);
      copyBytes(fresh, src);
      expect(firstMismatch(fresh, src)).toBe(-1);
      const shared = new Uint8Array(new SharedArrayBuffer(bytes + 1)).subarray(1);
      copyBytes(shared, fresh);
      expect(firstMismatch(shared, src)).toBe(-1);
    }
  });

  it('beginCopy runs on the helpers alone: complete once waited for, also back to back', async () => {
    await copyHelpersReady();
    for (const bytes of [1000, MIN_SLICE_BYTES, 3 * MiB + 5, 17 * MiB]) {
      const srcs = [1, 2, 3].map((s) => pattern(bytes, s));
      const dsts = srcs.map(() => new Uint8Array(new SharedArrayBuffer(bytes)));
      for (const [i, s] of srcs.entries()) {
        const job = beginCopy(dsts[i], s);
        job.wait();
      }
      for (const [i, s] of srcs.entries()) expect(firstMismatch(dsts[i], s)).toBe(-1);
    }
  });

  it('a wait past its deadline is a TimeoutError naming the copy', async () => {
    await copyHelpersReady();
    const bytes = 64 * MiB;
    const job = beginCopy(new Uint8Array(bytes), pattern(bytes, 5));
    let err: unknown;
    try {
      job.wait(performance.now() - 1);
    } catch (e) {
      err = e;
    }
    job.wait(); // the helpers finish the copy either way
    // 64 MiB into fresh memory takes milliseconds; the first deadline check comes after
    // 1,024 spins (microseconds), so the copy is always still running then.
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe('GPUGROUP_COPY_TIMEOUT');
    expect((err as Error).message).toMatch(/host copy helper thread did not finish its slice/);
  });

  it('copies after the helpers were stopped start them again', async () => {
    await stopCopyHelpers();
    const src = pattern(8 * MiB, 9);
    const dst = new Uint8Array(8 * MiB);
    copyBytes(dst, src);
    expect(firstMismatch(dst, src)).toBe(-1);
    expect(await copyHelpersReady()).toBe(5);
    const again = new Uint8Array(8 * MiB);
    copyBytes(again, src);
    expect(firstMismatch(again, src)).toBe(-1);
  });

  it('child processes get the non-temporal memcpy tunable unless GLIBC_TUNABLES is set already', () => {
    const expected = process.platform === 'linux' && process.arch === 'x64';
    expect(copyTunablesEnv({})).toEqual(
      expected ? { GLIBC_TUNABLES: `glibc.cpu.x86_non_temporal_threshold=${NON_TEMPORAL_COPY_BYTES}` } : {},
    );
    expect(copyTunablesEnv({ GLIBC_TUNABLES: '' })).toEqual({});
    expect(copyTunablesEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toEqual({});
  });

  afterAll(() => stopCopyHelpers());
});
