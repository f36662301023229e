// The staged host↔device copy paths: the piece planner (pure), and every copy path run
// for real against the stand-in CUDA library of bench/stub-native (host memory as the
// "device", copies as memcpy): chunk boundaries, every dtype and its conversions, pinned
// host tensors, the pageable fallback, copies in flight together, and the event loop.
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import { DTYPES, Tensor, dtypeInfo, setDevice } from '../../src/tensor/index.ts';
import { configureStaging, planPieces, stagingConfig, type StagingConfig } from '../../src/tensor/staging.ts';
import { stubHooks, useStubNative } from '../stub-native.ts';
import { exactValues } from './copy-cases.ts';

const MiB = 1 << 20;
const KiB = 1 << 10;

describe('planPieces', () => {
  const config: StagingConfig = { chunkBytes: 4 * MiB, chunks: 4, minPieceBytes: 256 * KiB };
  const covers = (bytes: number, slots: number) => {
    const pieces = planPieces(bytes, slots, config);
    let next = 0;
    for (const [i, p] of pieces.entries()) {
      expect(p.offset).toBe(next);
      expect(p.bytes).toBeGreaterThan(0);
      expect(p.bytes).toBeLessThanOrEqual(config.chunkBytes);
      expect(p.slot).toBe(i % slots);
      if (i < pieces.length - 1) expect(p.bytes % (64 * KiB)).toBe(0);
      next += p.bytes;
    }
    expect(next).toBe(bytes);
    return pieces;
  };

  it('cuts nothing out of nothing and one piece out of a small copy', () => {
    expect(planPieces(0, 4, config)).toEqual([]);
    expect(covers(1, 4)).toEqual([{ offset: 0, bytes: 1, slot: 0 }]);
    expect(covers(4096, 4)).toEqual([{ offset: 0, bytes: 4096, slot: 0 }]);
    expect(covers(256 * KiB, 4)).toHaveLength(1);
  });

  it('spreads 1 MiB over the four chunks so the pieces overlap', () => {
    expect(covers(MiB, 4).map((p) => p.bytes)).toEqual([256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB]);
    expect(covers(MiB, 1).map((p) => p.bytes)).toEqual([MiB]);
  });

  it('uses whole chunks for large copies, around every chunk boundary', () => {
    const c = config.chunkBytes;
    expect(covers(16 * c, 4).every((p) => p.bytes === c)).toBe(true);
    for (const bytes of [c - 1, c, c + 1, 3.5 * c, 4 * c - 8, 64 * c + 2]) covers(bytes, 4);
    const third = MiB + 64 * KiB; // ceil((4 MiB + 1) / 4) rounded up to 64 KiB
    expect(covers(c + 1, 4).map((p) => p.bytes)).toEqual([third, third, third, c + 1 - 3 * third]);
    expect(covers(256 * MiB, 4)).toHaveLength(64);
  });
});

const stub = useStubNative();
const CHUNK = 64 * KiB;

describe.skipIf(!stub)('staged copies through the stand-in CUDA library', () => {
  beforeAll(() => {
    setDevice(0);
    // Small chunks so that every boundary case is a few KiB; two chunks so pieces alternate.
    configureStaging({ chunkBytes: CHUNK, chunks: 2, minPieceBytes: CHUNK });
  });

  const expectValues = (got: ArrayLike<unknown>, want: ArrayLike<unknown>) => {
    expect(got.length).toBe(want.length);
    const bad = Array.prototype.findIndex.call(want, (v: unknown, i: number) => got[i] !== v);
    expect(bad, `first mismatch at ${bad}: ${String(got[bad])} vs ${String(want[bad])}`).toBe(-1);
  };

  const sizesFor = (itemsize: number) =>
    [0, itemsize, CHUNK - itemsize, CHUNK, CHUNK + itemsize, 3.5 * CHUNK, 5 * CHUNK + 3 * itemsize].map((b) =>
      Math.floor(b / itemsize),
    );

  it.each(DTYPES)(
    '%s: fromArray to the device, toArray, to(cpu) and toAsync, across chunk boundaries',
    async (dtype) => {
      const itemsize = dtypeInfo(dtype).bytes;
      for (const n of sizesFor(itemsize)) {
        const values = exactValues(dtype, n);
        const dev = Tensor.fromArray(values, { dtype, device: 'cuda:0' });
        expect(dev.nbytes).toBe(n * itemsize);
        expectValues((await dev.toArray()) as ArrayLike<unknown>, values);
        const host = dev.to('cpu');
        expectValues((await host.toArray()) as ArrayLike<unknown>, values);
        const back = await host.toAsync('cuda:0');
        expectValues((await (await back.toAsync('cpu')).toArray()) as ArrayLike<unknown>, values);
        const again = host.to('cuda:0');
        expectValues((await again.toArray()) as ArrayLike<unknown>, values);
        for (const t of [dev, back, again]) t.dispose();
      }
    },
  );

  it('fromArray converts any typed array or plain numbers to the dtype on the way', async () => {
    const n = 3 * CHUNK;
    const f64 = Float64Array.from({ length: n }, (_, i) => i - 7);
    const asF32 = Tensor.fromArray(f64, { dtype: 'float32', device: 'cuda:0' });
    expectValues((await asF32.toArray()) as Float32Array, Array.from(f64));
    const asI64 = Tensor.fromArray(Array.from(f64), { dtype: 'int64', device: 'cuda:0' });
    expectValues(
      (await asI64.toArray()) as BigInt64Array,
      Array.from(f64, (v) => BigInt(v)),
    );
    const fromBig = Tensor.fromArray(
      BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
      {
        dtype: 'float64',
        device: 'cuda:0',
      },
    );
    expectValues(
      (await fromBig.toArray()) as Float64Array,
      Array.from({ length: n }, (_, i) => i),
    );
    const half = Tensor.fromArray(new Float32Array([0.1, Infinity, -0]), { dtype: 'float16', device: 'cuda:0' });
    expect(Array.from((await half.toArray()) as Float32Array)).toEqual([0.0999755859375, Infinity, -0]);
  });

  it('strided device tensors come back in row-major order', async () => {
    const n = 2 * CHUNK;
    const t = Tensor.fromArray(exactValues('float32', n), { shape: [256, n / 256], device: 'cuda:0' });
    const moved = t.movedim(0, 1);
    const want = (await t.to('cpu').movedim(0, 1).contiguous().toArray()) as Float32Array;
    expectValues((await moved.toArray()) as Float32Array, Array.from(want));
    expectValues((await moved.to('cpu').toArray()) as Float32Array, Array.from(want));
    const host = await moved.toAsync('cpu');
    expect(host.shape).toEqual(moved.shape);
    expectValues(host.hostView() as Float32Array, Array.from(want));
  });

  it('pinned host tensors: created, written, copied both ways as single copies, disposed', async () => {
    const values = Array.from(exactValues('float32', 3 * CHUNK + 5) as Float64Array);
    const pinned = Tensor.fromArray(values, { pinned: true });
    expect(pinned.isPinned).toBe(true);
    expect(pinned.device).toBe('cpu');
    expect(Tensor.fromArray(values).isPinned).toBe(false);
    const dev = pinned.to('cuda:0');
    expectValues((await dev.toArray()) as Float32Array, values);
    const into = Tensor.empty([values.length], { pinned: true });
    expect((into.hostView() as Float32Array).every((v) => v === 0)).toBe(true);
    into.copyFrom(dev);
    expectValues(into.hostView() as Float32Array, values);
    const copy = Tensor.fromArray(values).pin();
    expect(copy.isPinned).toBe(true);
    expect(copy.pin()).toBe(copy);
    expectValues((await copy.toArray()) as Float32Array, values);
    (copy.hostView() as Float32Array)[0] = 42;
    expect(((await copy.to('cuda:0').toArray()) as Float32Array)[0]).toBe(42);
    copy.dispose();
    copy.dispose();
    expect(() => copy.hostView()).toThrow(InvalidArgumentError);
    expect(() => Tensor.empty([4], { device: 'cuda:0', pinned: true })).toThrow(/only host tensors can be pinned/);
    expect(() => dev.pin()).toThrow(InvalidArgumentError);
  });

  it('copyFrom checks shape and dtype, and copies within and across devices', async () => {
    const a = Tensor.fromArray([1, 2, 3, 4], { device: 'cuda:0' });
    expect(() => Tensor.empty([4], { dtype: 'int32' }).copyFrom(a)).toThrow(InvalidArgumentError);
    expect(() => Tensor.empty([2, 2]).copyFrom(a)).toThrow(/expected float32 \[2, 2\]/);
    const host = Tensor.empty([4]).copyFrom(a);
    expect(Array.from((await host.toArray()) as Float32Array)).toEqual([1, 2, 3, 4]);
    const dev = Tensor.empty([4], { device: 'cuda:0' }).copyFrom(Tensor.fromArray([5, 6, 7, 8]));
    expect(Array.from((await dev.toArray()) as Float32Array)).toEqual([5, 6, 7, 8]);
    expect(Array.from((await Tensor.empty([4], { device: 'cuda:0' }).copyFrom(dev).toArray()) as Float32Array)).toEqual(
      [5, 6, 7, 8],
    );
  });

  it('copies in flight together each get their own chunks, or the pageable path when none is free', async () => {
    const a = Array.from(exactValues('float32', 6 * CHUNK) as Float64Array);
    const b = Array.from(exactValues('int32', 6 * CHUNK) as Float64Array);
    const da = Tensor.fromArray(a, { device: 'cuda:0' });
    const db = Tensor.fromArray(b, { dtype: 'int32', device: 'cuda:0' });
    const [ra, rb, rc] = await Promise.all([
      da.toArray(),
      db.toArray(),
      Tensor.fromArray(a).toAsync('cuda:0'),
      // A synchronous copy while the async ones hold both chunks: the pageable fallback.
      Promise.resolve().then(() => expectValues(da.to('cpu').hostView() as Float32Array, a)),
    ]);
    expectValues(ra as Float32Array, a);
    expectValues(rb as Int32Array, b);
    expectValues((await (rc as Tensor).toArray()) as Float32Array, a);
  });

  it('downloads land in host tensors of their own, which later downloads never share', async () => {
    // to('cpu') allocates without zeroing (the copy writes every byte): results must not
    // alias one another, and must behave as any host tensor (views, copies, uploads).
    const n = MiB / 4 + 5;
    const kept: { host: Tensor; k: number }[] = [];
    for (let k = 0; k < 6; k++) {
      const values = Float32Array.from({ length: n }, (_, i) => k * 10_000 + (i % 9973));
      const dev = Tensor.fromArray(values, { device: 'cuda:0' });
      const host = k % 2 === 0 ? dev.to('cpu') : await dev.toAsync('cpu');
      expect(host.device).toBe('cpu');
      expect(host.isPinned).toBe(false);
      expect(host.shape).toEqual([n]);
      // docs/api.md: an ArrayBuffer, unlike Tensor.empty's SharedArrayBuffer.
      expect(host.hostView().buffer).toBeInstanceOf(ArrayBuffer);
      kept.push({ host, k });
      dev.dispose();
    }
    const none = Tensor.empty([0, 3], { device: 'cuda:0' });
    for (const host of [none.to('cpu'), await none.toAsync('cpu')]) {
      expect(host.shape).toEqual([0, 3]);
      expect(host.hostView().buffer).toBeInstanceOf(ArrayBuffer);
    }
    for (const { host, k } of kept) {
      const want = Float32Array.from({ length: n }, (_, i) => k * 10_000 + (i % 9973));
      expectValues(host.hostView() as Float32Array, want);
      expectValues((await host.narrow(0, 3, 4).contiguous().toArray()) as Float32Array, want.subarray(3, 7));
      expectValues((await (await host.toAsync('cuda:0')).toArray()) as Float32Array, want);
    }
  });

  it('with staging off (0 chunks) the pageable path gives the same values', async () => {
    const saved = stagingConfig();
    configureStaging({ chunks: 0 });
    try {
      const values = Array.from(exactValues('bfloat16', 3 * CHUNK) as Float64Array);
      const dev = Tensor.fromArray(values, { dtype: 'bfloat16', device: 'cuda:0' });
      expectValues((await dev.toArray()) as Float32Array, values);
      expectValues((await dev.to('cpu').toArray()) as Float32Array, values);
      expectValues((await (await dev.toAsync('cpu')).toArray()) as Float32Array, values);
    } finally {
      configureStaging(saved);
    }
  });

  it('large pieces are copied in parallel slices (toArray, toAsync both ways) and every byte lands', async () => {
    const saved = stagingConfig();
    // 4 MiB chunks: each piece is split between this thread and the thread pool.
    configureStaging({ chunkBytes: 4 * MiB, chunks: 2, minPieceBytes: MiB });
    try {
      for (const n of [MiB / 4, (3 * MiB) / 2 + 7]) {
        const values = Float32Array.from({ length: n }, (_, i) => (i % 65521) - 30000.5);
        const dev = Tensor.fromArray(values, { device: 'cuda:0' });
        expectValues((await dev.toArray()) as Float32Array, values);
        const host = await dev.toAsync('cpu');
        expectValues(host.hostView() as Float32Array, values);
        const back = await host.toAsync('cuda:0');
        expectValues((await back.toArray()) as Float32Array, values);
        expectValues(back.to('cpu').hostView() as Float32Array, values);
        const ints = Int32Array.from(values, (v) => Math.trunc(v));
        const devInts = await Tensor.fromArray(ints).toAsync('cuda:0');
        expectValues((await devInts.toArray()) as Int32Array, ints);
        for (const t of [dev, back, devInts]) t.dispose();
      }
    } finally {
      configureStaging(saved);
    }
  });

  it('back-to-back copies smaller than a chunk take its bytes in turn, wrapping, and every byte lands', async () => {
    const saved = stagingConfig();
    // 1 MiB chunks, 64 KiB pieces: a copy of 100 KiB + 3 elements is two pieces, and the
    // pieces move through each chunk (page-aligned) until they wrap to its start.
    configureStaging({ chunkBytes: MiB, chunks: 2, minPieceBytes: 64 * KiB });
    try {
      const n = (100 * KiB) / 4 + 3;
      for (let k = 0; k < 24; k++) {
        const values = Float32Array.from({ length: n }, (_, i) => k * 1000 + (i % 997));
        const dev = Tensor.fromArray(values, { device: 'cuda:0' });
        expectValues((await dev.toArray()) as Float32Array, values);
        expectValues(dev.to('cpu').hostView() as Float32Array, values);
        const back = await dev.to('cpu').toAsync('cuda:0');
        expectValues((await back.toArray()) as Float32Array, values);
        for (const t of [dev, back]) t.dispose();
      }
    } finally {
      configureStaging(saved);
    }
  });

  it('a large async copy lets the event loop run between pieces', async () => {
    const saved = stagingConfig();
    configureStaging({ chunkBytes: MiB, chunks: 2, minPieceBytes: MiB });
    try {
      const host = Tensor.fromArray(new Float32Array(16 * MiB).fill(3));
      let turns = 0;
      let ticking = true;
      const tick = (): void => {
        turns++;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      const dev = await host.toAsync('cuda:0');
      const back = (await dev.toArray()) as Float32Array;
      ticking = false;
      expect(back[back.length - 1]).toBe(3);
      expect(turns).toBeGreaterThan(2);
    } finally {
      configureStaging(saved);
    }
  });

  it('an async copy yields to the event loop about every millisecond, whether its chunks are free or free up a moment later', async () => {
    // Lag 0: every chunk is free when the upload looks, so the next piece's fill starts
    // early and the upload never waits. Lag 1: each chunk's event reads busy once, then
    // done within the wait's short spin, which resolves without an event-loop turn. In
    // both, the copy must still yield on time.
    const saved = stagingConfig();
    configureStaging({ chunkBytes: MiB, chunks: 2, minPieceBytes: MiB });
    try {
      for (const lag of [0, 1]) {
        stubHooks().setEventLag(lag);
        const host = Tensor.fromArray(new Float32Array(16 * MiB).fill(lag + 4));
        const turnsIn = { upload: 0, download: 0 };
        let phase: keyof typeof turnsIn | null = 'upload';
        const tick = (): void => {
          if (!phase) return;
          turnsIn[phase]++;
          setImmediate(tick);
        };
        setImmediate(tick);
        const started = performance.now();
        const dev = await host.toAsync('cuda:0');
        const uploadMs = performance.now() - started;
        phase = 'download';
        const back = (await dev.toArray()) as Float32Array;
        phase = null;
        expect(back[0]).toBe(lag + 4);
        expect(back[back.length - 1]).toBe(lag + 4);
        // 64 pieces of 1 MiB each way, about a turn per millisecond of work.
        expect(turnsIn.upload, `lag ${lag}: turns in a ${uploadMs.toFixed(1)} ms upload`).toBeGreaterThan(
          Math.min(8, uploadMs / 4),
        );
        expect(turnsIn.download, `lag ${lag}: turns in the download`).toBeGreaterThan(2);
        dev.dispose();
      }
    } finally {
      stubHooks().setEventLag(0);
      configureStaging(saved);
    }
  });

  it('async uploads in flight together, their turns interleaved, land every byte', async () => {
    // Each turn comes with no fill job of its copy on the helper threads (which take one
    // job at a time), so the other upload may dispatch its own during it.
    const saved = stagingConfig();
    configureStaging({ chunkBytes: MiB, chunks: 4, minPieceBytes: MiB });
    try {
      const n = 6 * MiB + 3;
      const a = Float32Array.from({ length: n }, (_, i) => i % 65521);
      const b = Float32Array.from({ length: n }, (_, i) => -(i % 65519));
      const [da, db] = await Promise.all([
        Tensor.fromArray(a).toAsync('cuda:0'),
        Tensor.fromArray(b).toAsync('cuda:0'),
      ]);
      expectValues((await da.toArray()) as Float32Array, a);
      expectValues((await db.toArray()) as Float32Array, b);
      for (const t of [da, db]) t.dispose();
    } finally {
      configureStaging(saved);
    }
  });
});
