// Host↔device copies on a real GPU: staged through pinned chunks (sizes around the
// piece and chunk boundaries of the default settings, every dtype and its conversions),
// pinned host tensors as single stream-ordered copies, and copies that overlap.
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import { DTYPES, Tensor, currentStream, dtypeInfo, setDevice } from '../../src/tensor/index.ts';
import { stagingConfig } from '../../src/tensor/staging.ts';
import { exactValues } from '../tensor/copy-cases.ts';

const gpus = cudaDeviceCount();

const expectValues = (got: ArrayLike<unknown>, want: ArrayLike<unknown>) => {
  expect(got.length).toBe(want.length);
  let bad = -1;
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      bad = i;
      break;
    }
  }
  expect(bad, `first mismatch at ${bad}: ${String(got[bad])} vs ${String(want[bad])}`).toBe(-1);
};

describe.skipIf(gpus === 0)('host↔device copies on a GPU', () => {
  if (gpus > 0) setDevice(0);
  const { chunkBytes, minPieceBytes } = stagingConfig();

  it.each(DTYPES)('%s round-trips through staging at sizes around every piece and chunk boundary', async (dtype) => {
    const itemsize = dtypeInfo(dtype).bytes;
    const byteSizes = [
      0,
      itemsize,
      4096,
      minPieceBytes - itemsize,
      minPieceBytes,
      minPieceBytes + itemsize,
      1 << 20,
      chunkBytes - itemsize,
      chunkBytes,
      chunkBytes + itemsize,
      3.5 * chunkBytes + 3 * itemsize,
    ];
    for (const bytes of byteSizes) {
      const n = Math.floor(bytes / itemsize);
      const values = exactValues(dtype, n);
      const dev = Tensor.fromArray(values, { dtype, device: 'cuda:0' });
      const want = values;
      expectValues((await dev.toArray()) as ArrayLike<unknown>, want);
      const host = dev.to('cpu');
      expectValues((await host.toArray()) as ArrayLike<unknown>, want);
      const up = host.to('cuda:0');
      expectValues((await up.toArray()) as ArrayLike<unknown>, want);
      const upAsync = await host.toAsync('cuda:0');
      expectValues((await (await upAsync.toAsync('cpu')).toArray()) as ArrayLike<unknown>, want);
      for (const t of [dev, up, upAsync]) t.dispose();
    }
  });

  it('a device tensor written by later device work reads back the later values (stream order)', async () => {
    const n = (3 * chunkBytes) / 4;
    const dev = Tensor.fromArray(new Float32Array(n).fill(1), { device: 'cuda:0' });
    dev.copyFrom(Tensor.full([n], 7, { device: 'cuda:0' }));
    const back = (await dev.toArray()) as Float32Array;
    expect(back[0]).toBe(7);
    expect(back[n - 1]).toBe(7);
    expect(dev.to('cpu').hostView()[n - 1]).toBe(7);
  });

  it('pinned host tensors copy both ways as one stream-ordered cudaMemcpyAsync', async () => {
    const n = (5 * chunkBytes) / 4 + 3;
    const values = exactValues('float32', n);
    const pinned = Tensor.fromArray(values, { dtype: 'float32', pinned: true });
    expect(pinned.isPinned).toBe(true);
    const dev = pinned.to('cuda:0');
    await currentStream().synchronize();
    expectValues((await dev.toArray()) as Float32Array, values);
    const into = Tensor.empty([n], { pinned: true }).copyFrom(dev);
    await currentStream().synchronize();
    expectValues(into.hostView() as Float32Array, values);
    const strided = Tensor.fromArray(Array.from(values.subarray(0, 6) as Float64Array), {
      shape: [2, 3],
      device: 'cuda:0',
    }).movedim(0, 1);
    const t = Tensor.empty([3, 2], { pinned: true }).copyFrom(strided);
    await currentStream().synchronize();
    expect(Array.from(t.hostView() as Float32Array)).toEqual([0, 3, 1, 4, 2, 5].map((i) => Number(values[i])));
    for (const x of [pinned, into, t, dev]) x.dispose();
    expect(() => into.hostView()).toThrow(/disposed/);
  });

  it('copies in flight together (async downloads, an async upload and a synchronous copy) all arrive intact', async () => {
    const a = exactValues('float32', 6 * (chunkBytes / 4));
    const b = exactValues('bfloat16', 3 * (chunkBytes / 2));
    const da = Tensor.fromArray(a, { device: 'cuda:0' });
    const db = Tensor.fromArray(b, { dtype: 'bfloat16', device: 'cuda:0' });
    const [ra, rb, up] = await Promise.all([
      da.toArray(),
      db.toArray(),
      Tensor.fromArray(a).toAsync('cuda:0'),
      Promise.resolve().then(() => expectValues(da.to('cpu').hostView() as Float32Array, a)),
    ]);
    expectValues(ra as Float32Array, a);
    expectValues(rb as Float32Array, b);
    expectValues((await (up as Tensor).toArray()) as Float32Array, a);
  });

  it('a 256 MiB async upload and download keep the event loop turning', async () => {
    const n = 64 << 20;
    const host = Tensor.fromArray(new Float32Array(n).fill(2.5));
    let turns = 0;
    let longest = 0;
    let phase = 'upload';
    let longestIn = phase;
    let last = performance.now();
    let ticking = true;
    const tick = (): void => {
      const now = performance.now();
      if (now - last > longest) {
        longest = now - last;
        longestIn = `${phase}, turn ${turns}`;
      }
      last = now;
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const dev = await host.toAsync('cuda:0');
    phase = 'download';
    const uploadTurns = turns;
    const back = (await dev.toArray()) as Float32Array;
    ticking = false;
    expect(back[n - 1]).toBe(2.5);
    expect(turns).toBeGreaterThan(20);
    // The upload (several ms) yields too, even when each next chunk is free at once.
    expect(uploadTurns, 'turns during the upload').toBeGreaterThan(2);
    // A piece's host copy (4 MiB) takes well under 10 ms even on a busy host.
    expect(longest, `the longest turn (${longestIn} of ${turns})`).toBeLessThan(25);
    dev.dispose();
  });
});
