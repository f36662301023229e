// Device storages on the stand-in CUDA library: a stream's block cache, and the GC
// safety net that frees a device tensor dropped without dispose().
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cuda } from '../../native/index.ts';
import { Stream, Tensor, setCurrentStream, setDevice } from '../../src/tensor/index.ts';
import { useStubNative } from '../stub-native.ts';

const stub = useStubNative();

describe.skipIf(!stub)('device storages on the stand-in CUDA library', () => {
  const freed: bigint[] = [];
  let restore: () => void;

  beforeAll(() => {
    setDevice(0);
    const rt = cuda();
    const free = rt.cudaFreeAsync;
    rt.cudaFreeAsync = (ptr: bigint, stream: bigint) => {
      freed.push(ptr);
      return free(ptr, stream);
    };
    restore = () => {
      rt.cudaFreeAsync = free;
    };
  });
  afterAll(() => restore());

  it('a block freed on a stream serves that stream next, never another one', () => {
    const a = Tensor.empty([100], { device: 'cuda:0' });
    const ptr = a.dataPtr;
    a.dispose();
    expect(freed).not.toContain(ptr); // kept for the stream
    const b = Tensor.empty([120], { device: 'cuda:0' }); // the same 512 B size class
    expect(b.dataPtr).toBe(ptr);

    const other = new Stream();
    const previous = setCurrentStream(other);
    try {
      const c = Tensor.empty([100], { device: 'cuda:0' });
      expect(c.dataPtr).not.toBe(ptr);
      // Made on the first stream, freed while another one is current: back to the pool.
      b.dispose();
      expect(freed).toContain(ptr);
      c.dispose();
    } finally {
      setCurrentStream(previous as Stream);
      other.dispose();
    }
  });

  it('frees a device tensor dropped without dispose(), and never one that was disposed', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
    let dropped = 0n;
    let disposedLate = 0n;
    let disposedAtOnce = 0n;
    (() => {
      const t = Tensor.empty([1 << 20], { device: 'cuda:0' });
      dropped = t.dataPtr;
      const u = Tensor.empty([1 << 20], { device: 'cuda:0' });
      disposedAtOnce = u.dataPtr;
      u.dispose();
    })();
    await turn(); // the safety net is registered a turn later for what is still alive
    (() => {
      const v = Tensor.empty([3 << 20], { device: 'cuda:0' });
      disposedLate = v.dataPtr;
      return turn().then(() => v.dispose()); // registered first, then disposed
    })();
    await turn();
    for (let i = 0; i < 50 && !freed.includes(dropped); i++) {
      gc();
      await turn();
    }
    expect(freed).toContain(dropped);
    expect(freed.filter((p) => p === dropped)).toHaveLength(1);
    expect(freed).not.toContain(disposedAtOnce);
    expect(freed).not.toContain(disposedLate);
  });
});
