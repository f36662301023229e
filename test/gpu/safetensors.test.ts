// safetensors with torch's `safetensors` package (test/gpu/fixtures/torch_safetensors.py):
// files it writes load onto the GPU here; files written here load in torch; and the two
// writers produce the same bytes.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../native/index.ts';
import {
  DTYPES,
  type DType,
  loadSafetensors,
  readSafetensorsInfo,
  saveSafetensors,
  setDevice,
  Tensor,
} from '../../src/tensor/index.ts';

const gpus = cudaDeviceCount();
const fixture = new URL('./fixtures/torch_safetensors.py', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'gpugroup-st-gpu-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function python(...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)('python3', [fixture, ...args], { timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

/** The fixture's values: element i is ((i * 7) % 17) - 8 ((i * 7) % 17 for uint8). */
function expected(dtype: DType): number[] {
  return Array.from({ length: 105 }, (_, i) => ((i * 7) % 17) - (dtype === 'uint8' ? 0 : 8));
}

describe.skipIf(gpus === 0)('safetensors files and torch', () => {
  if (gpus > 0) setDevice(0);

  it("loads every dtype of a file torch's safetensors wrote onto cuda:0", async () => {
    const path = join(dir, 'torch.safetensors');
    await python('write', path);
    expect((await readSafetensorsInfo(path)).metadata).toEqual({ writer: 'torch' });
    const loaded = await loadSafetensors(path, { device: 'cuda:0' });
    expect(loaded.size).toBe(DTYPES.length + 1);
    for (const dtype of DTYPES) {
      const t = loaded.get(`w.${dtype}`)!;
      expect([t.device, t.dtype, t.shape], dtype).toEqual(['cuda:0', dtype, [3, 5, 7]]);
      expect(Array.from((await t.toArray()) as ArrayLike<number | bigint>, Number), dtype).toEqual(expected(dtype));
    }
    const scalar = loaded.get('scalar')!;
    expect(scalar.shape).toEqual([]);
    expect(Array.from((await scalar.toArray()) as Float64Array)).toEqual([2.5]);
    for (const t of loaded.values()) t.dispose();
  });

  it('writes from cuda:0 a file torch loads, byte for byte the file torch writes', async () => {
    const ours = join(dir, 'gpugroup.safetensors');
    const tensors = new Map<string, Tensor>();
    for (const dtype of DTYPES) {
      const values = dtype === 'int64' ? expected(dtype).map(BigInt) : expected(dtype);
      tensors.set(`w.${dtype}`, Tensor.fromArray(values, { dtype, shape: [3, 5, 7], device: 'cuda:0' }));
    }
    tensors.set('scalar', Tensor.fromArray([2.5], { dtype: 'float64', shape: [], device: 'cuda:0' }));
    await saveSafetensors(ours, tensors, { writer: 'torch' });
    expect(await python('check', ours)).toEqual({ bad: [], extra: [], device: 'cuda:0' });
    const theirs = join(dir, 'torch-again.safetensors');
    await python('write', theirs);
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    for (const t of tensors.values()) t.dispose();
  });
});
