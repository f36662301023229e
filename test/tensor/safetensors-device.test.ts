// safetensors device paths on the stand-in CUDA library (device memory is host memory
// there, copies are memmove): the streaming loader and the device-side save.
import { open, rm } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSafetensors, saveSafetensors, setDevice, Tensor } from '../../src/tensor/index.ts';
import { useStubNative } from '../stub-native.ts';

const stub = useStubNative();
const dir = mkdtempSync(join(tmpdir(), 'gpugroup-st-dev-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const MIB = 1 << 20;

/** Writes a file of `tensors` int32 tensors of `perTensor` bytes whose values are their global element index, 1 MiB at a time. */
async function writeIndexFile(path: string, tensors: number, perTensor: number): Promise<void> {
  const entries = Array.from({ length: tensors }, (_, i) => [
    `t${String(i).padStart(2, '0')}`,
    { dtype: 'I32', shape: [perTensor / 4], data_offsets: [i * perTensor, (i + 1) * perTensor] },
  ]);
  let json = JSON.stringify(Object.fromEntries(entries));
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fh = await open(path, 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await fh.write(Buffer.concat([prefix, Buffer.from(json)]));
  const chunk = new Int32Array(MIB / 4);
  for (let at = 0; at < (tensors * perTensor) / 4; at += chunk.length) {
    for (let i = 0; i < chunk.length; i++) chunk[i] = at + i;
    await fh.write(new Uint8Array(chunk.buffer));
  }
  await fh.close();
}

describe.skipIf(!stub)('safetensors on the stand-in CUDA library', () => {
  if (stub) setDevice(0);

  it('a 64 MiB file streams onto the device through 1 MiB buffers without holding the file in JS memory', async () => {
    const path = join(dir, 'big.safetensors');
    await writeIndexFile(path, 4, 16 * MIB);
    const before = process.memoryUsage().arrayBuffers;
    const loaded = await loadSafetensors(path, { device: 'cuda:0', bufferBytes: MIB, buffers: 3 });
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(8 * MIB);
    expect([...loaded.keys()]).toEqual(['t00', 't01', 't02', 't03']);
    for (const [name, t] of loaded) {
      expect(t.device).toBe('cuda:0');
      const k = Number(name.slice(1));
      const values = (await t.toArray()) as Int32Array;
      const base = (k * 16 * MIB) / 4;
      for (const i of [0, 1, 262_143, 262_144, values.length - 1]) expect(values[i]).toBe(base + i);
      t.dispose();
    }
  });

  it('tensors not filtered in, and reads that straddle tensors, land at the right place', async () => {
    const path = join(dir, 'mixed.safetensors');
    const src = {
      a: Tensor.arange(1000, { dtype: 'int32' }),
      b: Tensor.arange(3000, { dtype: 'float32' }),
      c: Tensor.fromArray([5, 6, 7], { dtype: 'uint8' }),
      d: Tensor.arange(777, { dtype: 'int64' }),
    };
    await saveSafetensors(path, src);
    const got = await loadSafetensors(path, { device: 'cuda:0', bufferBytes: 4096, filter: (n) => n !== 'b' });
    expect([...got.keys()]).toEqual(['d', 'a', 'c']);
    for (const [name, t] of got) {
      expect(Array.from((await t.toArray()) as ArrayLike<unknown>), name).toEqual(
        Array.from((await src[name as keyof typeof src].toArray()) as ArrayLike<unknown>),
      );
    }
  });

  it('device tensors save in stream order and load back on the host', async () => {
    const path = join(dir, 'from-device.safetensors');
    // 12 MB: several pieces of the pinned staging.
    const dev = Tensor.arange(3_000_000, { dtype: 'float32', device: 'cuda:0' });
    const half = Tensor.full([3, 5], -1.5, { dtype: 'bfloat16', device: 'cuda:0' });
    await saveSafetensors(path, { x: dev, h: half.movedim(0, 1) });
    const back = await loadSafetensors(path);
    const x = (await back.get('x')!.toArray()) as Float32Array;
    expect(x.length).toBe(3_000_000);
    for (const i of [0, 1, 1_048_575, 1_048_576, 1_048_577, 2_999_999]) expect(x[i]).toBe(i);
    expect(back.get('h')!.shape).toEqual([5, 3]);
    expect(Array.from((await back.get('h')!.toArray()) as Float32Array)).toEqual(new Array(15).fill(-1.5));
  });
});
