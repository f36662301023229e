// CUDA IPC with a torch process (test/gpu/fixtures/torch_ipc.py): a tensor crosses
// between the two with no copy, each way, and each side sees the other's writes.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import { copyBytes, currentStream, setDevice, Tensor } from '../../src/tensor/index.ts';

const gpus = cudaDeviceCount();
const fixture = new URL('./fixtures/torch_ipc.py', import.meta.url).pathname;
const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Starts the torch side; `next()` resolves with its next JSON line (rejecting after `ms` or on exit). */
function torch(...args: string[]) {
  const child = spawn('python3', [fixture, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async <T>(ms = 60_000): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`torch side silent for ${ms} ms; stderr:\n${stderr}`)), ms);
    });
    try {
      const line = await Promise.race([lines.next(), timeout]);
      if (line.done) throw new Error(`torch side exited (${child.exitCode}); stderr:\n${stderr}`);
      return JSON.parse(line.value) as T;
    } finally {
      clearTimeout(timer);
    }
  };
  return { child, next };
}

describe.skipIf(gpus === 0)('CUDA IPC with torch', () => {
  if (gpus > 0) setDevice(0);
  const N = 4096;

  it('a tensor torch exported opens here, gpugroup writes into it, torch sees the writes', async () => {
    const side = torch('export', String(N));
    const h = await side.next<{
      handle: string;
      offset: number;
      storageOffset: number;
      torchHandle?: string;
      torchError?: string;
    }>();
    expect(h.offset).toBe(h.storageOffset + 1024 * 4);
    const t = Tensor.fromIpcHandle({ handle: h.handle, offset: h.offset }, [N], 'float32', 'cuda:0');
    const seen = (await t.toArray()) as Float32Array;
    expect(Array.from(seen.subarray(0, 3))).toEqual([1000, 1001, 1002]);
    expect(seen[N - 1]).toBe(1000 + N - 1);
    // Write -(i + 1) into the shared memory with a device copy on gpugroup's stream.
    const values = Tensor.fromArray(
      Array.from({ length: N }, (_, i) => -(i + 1)),
      { dtype: 'float32', device: 'cuda:0' },
    );
    copyBytes(t, 0, values, 0, N * 4);
    await currentStream().synchronize(30_000);
    t.dispose();
    values.dispose();
    // torch's own _share_cuda_ handle names the same allocation.
    let viaTorchHandle: number[] | null = null;
    if (h.torchHandle) {
      const again = Tensor.fromIpcHandle({ handle: h.torchHandle, offset: h.offset }, [N], 'float32', 'cuda:0');
      viaTorchHandle = Array.from(((await again.toArray()) as Float32Array).subarray(0, 3));
      again.dispose();
    }
    side.child.stdin.write('done\n');
    const after = await side.next<{ seen: number[]; rest: number }>();
    expect(after.seen).toEqual(Array.from({ length: N }, (_, i) => -(i + 1)));
    expect(after.rest).toBe(0);
    expect(h.torchError).toBeUndefined();
    expect(viaTorchHandle).toEqual([-1, -2, -3]);
  });

  it('a tensor gpugroup exported opens in torch, torch writes into it, gpugroup sees the writes', async () => {
    const owner = Tensor.zeros([N + 64], { dtype: 'float32', device: 'cuda:0', ipc: true });
    const values = Tensor.fromArray(
      Array.from({ length: N }, (_, i) => i * 0.5),
      { dtype: 'float32', device: 'cuda:0' },
    );
    const view = owner.narrow(0, 64, N);
    copyBytes(view, 0, values, 0, N * 4);
    await currentStream().synchronize(30_000);
    const h = view.ipcHandle();
    expect(h.offset).toBe(256);
    const side = torch('import', JSON.stringify({ ...h, n: N }));
    const result = await side.next<{ seen: number[] }>();
    expect(result.seen).toEqual(Array.from({ length: N }, (_, i) => i * 0.5));
    const back = (await view.toArray()) as Float32Array;
    expect(Array.from(back)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(Array.from((await owner.narrow(0, 0, 64).toArray()) as Float32Array)).toEqual(new Array(64).fill(0));
    owner.dispose();
    values.dispose();
  });

  it('pool memory is refused with the remedy in the message', () => {
    const pool = Tensor.zeros([16], { device: 'cuda:0' });
    expect(() => pool.ipcHandle()).toThrow(/ipc: true/);
    pool.dispose();
  });
});
