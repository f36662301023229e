import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsError } from '../../src/errors.ts';
import {
  DTYPES,
  type DType,
  loadSafetensors,
  readSafetensorsInfo,
  saveSafetensors,
  Tensor,
} from '../../src/tensor/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'gpugroup-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (name = 'f') => join(dir, `${name}-${n++}.safetensors`);

/** A file from a header string and data bytes, N written as given (or the header's length). */
function rawFile(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), length?: bigint): string {
  const json = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(length ?? BigInt(json.length));
  const path = file('raw');
  writeFileSync(path, Buffer.concat([prefix, json, data]));
  return path;
}

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

describe('safetensors files, byte for byte as the reference implementation writes them', () => {
  it('one F32 tensor: the header padded with spaces to 8 bytes, then little-endian data', async () => {
    const path = file();
    await saveSafetensors(path, { attn0: Tensor.fromArray([0, 1, 2, 3, 4, 5], { shape: [1, 1, 2, 3] }) });
    // huggingface/safetensors, safetensors/src/tensor.rs: test_serialization_forced_alignement.
    const header = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    const expected = Buffer.concat([
      Buffer.from([72, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(`${header}       `),
      Buffer.from([0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64]),
    ]);
    expect(readFileSync(path)).toEqual(expected);
  });

  it('no tensors, with and without __metadata__', async () => {
    const empty = file();
    await saveSafetensors(empty, {});
    expect([...readFileSync(empty)]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const meta = file();
    await saveSafetensors(meta, new Map(), { framework: 'pt' });
    expect(readFileSync(meta)).toEqual(
      Buffer.concat([Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{"framework":"pt"}}     ')]),
    );
    expect(await readSafetensorsInfo(meta)).toEqual({ tensors: [], metadata: { framework: 'pt' } });
    expect((await loadSafetensors(meta)).size).toBe(0);
  });

  it('tensors go by descending dtype alignment, then name; integer-like names keep that order', async () => {
    const path = file();
    await saveSafetensors(path, [
      ['b', Tensor.fromArray([1], { dtype: 'float32' })],
      ['a', Tensor.fromArray([2], { dtype: 'float32' })],
      ['0', Tensor.fromArray([3], { dtype: 'uint8' })],
      ['d', Tensor.fromArray([4n], { dtype: 'int64' })],
      ['e', Tensor.fromArray([5], { dtype: 'bfloat16' })],
    ]);
    const info = await readSafetensorsInfo(path);
    expect(info.tensors.map((t) => t.name)).toEqual(['d', 'a', 'b', 'e', '0']);
    const text = readFileSync(path).subarray(8).toString();
    expect(text.indexOf('"d"')).toBeLessThan(text.indexOf('"0"'));
    expect(text).toContain('"0":{"dtype":"U8","shape":[1],"data_offsets":[18,19]}');
  });
});

describe('safetensors round trips on the host', () => {
  const valuesOf = (dtype: DType) =>
    [0, 1, -2, 3, 96, -96, 0.5, 7].map((v) =>
      dtype === 'uint8' ? Math.abs(Math.trunc(v)) : dtype.startsWith('int') ? Math.trunc(v) : v,
    );

  it('every dtype, with shapes, metadata and a non-contiguous tensor, comes back with the same values', async () => {
    const path = file();
    const tensors = new Map<string, Tensor>();
    for (const dtype of DTYPES) tensors.set(`w.${dtype}`, Tensor.fromArray(valuesOf(dtype), { dtype, shape: [2, 4] }));
    tensors.set('scalar', Tensor.fromArray([2.5], { dtype: 'float64', shape: [] }));
    tensors.set('empty', Tensor.empty([0, 3], { dtype: 'float16' }));
    tensors.set('transposed', Tensor.arange(6, { dtype: 'int32' }).reshape([2, 3]).movedim(0, 1));
    await saveSafetensors(path, tensors, { format: 'pt', step: '7' });
    const loaded = await loadSafetensors(path);
    expect([...loaded.keys()].sort()).toEqual([...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const got = loaded.get(name)!;
      expect([got.dtype, got.shape], name).toEqual([t.dtype, t.shape]);
      expect(Array.from((await got.toArray()) as ArrayLike<unknown>), name).toEqual(
        Array.from((await t.toArray()) as ArrayLike<unknown>),
      );
    }
    expect(Array.from((await loaded.get('transposed')!.toArray()) as Int32Array)).toEqual([0, 3, 1, 4, 2, 5]);
    expect((await readSafetensorsInfo(path)).metadata).toEqual({ format: 'pt', step: '7' });
  });

  it('filter loads only what it keeps', async () => {
    const path = file();
    await saveSafetensors(path, { a: Tensor.fromArray([1, 2]), b: Tensor.fromArray([3]), c: Tensor.fromArray([4]) });
    const got = await loadSafetensors(path, { filter: (name) => name !== 'b' });
    expect([...got.keys()]).toEqual(['a', 'c']);
    expect(Array.from((await got.get('c')!.toArray()) as Float32Array)).toEqual([4]);
  });

  it('shards load from a list of paths or from an index json; a name in two shards is refused', async () => {
    const one = join(dir, 'model-00001-of-00002.safetensors');
    const two = join(dir, 'model-00002-of-00002.safetensors');
    await saveSafetensors(one, { 'layer.0': Tensor.fromArray([1, 2]) });
    await saveSafetensors(two, { 'layer.1': Tensor.fromArray([3, 4], { dtype: 'bfloat16' }) });
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(
      index,
      JSON.stringify({
        metadata: { total_size: 12 },
        weight_map: { 'layer.0': 'model-00001-of-00002.safetensors', 'layer.1': 'model-00002-of-00002.safetensors' },
      }),
    );
    for (const source of [[one, two], index]) {
      const got = await loadSafetensors(source);
      expect([...got.keys()]).toEqual(['layer.0', 'layer.1']);
      expect(Array.from((await got.get('layer.1')!.toArray()) as Float32Array)).toEqual([3, 4]);
    }
    await expect(loadSafetensors([one, one])).rejects.toThrow(/'layer.0' is in two of the files/);
    writeFileSync(index, JSON.stringify({ weight_map: { 'layer.2': 'model-00001-of-00002.safetensors' } }));
    await expect(loadSafetensors(index)).rejects.toThrow(/maps layer.2 here but the file lacks them/);
  });

  it('saving refuses duplicate names, the reserved name and non-string metadata', async () => {
    const t = Tensor.fromArray([1]);
    await expect(
      saveSafetensors(file(), [
        ['x', t],
        ['x', t],
      ]),
    ).rejects.toThrow(/'x' appears twice/);
    await expect(saveSafetensors(file(), { __metadata__: t })).rejects.toThrow(/invalid tensor name/);
    await expect(saveSafetensors(file(), { x: t }, { n: 1 as never })).rejects.toThrow(/metadata/);
  });
});

describe('corrupt safetensors files give a SafetensorsError naming the file and the fault', () => {
  const ok = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  it.each([
    [
      'a file shorter than 8 bytes',
      () => {
        const path = file('short');
        writeFileSync(path, Buffer.from([2, 0, 0, 0]));
        return path;
      },
      /has 4 bytes; a safetensors file starts with 8/,
    ],
    ['a header length over 100 MB', () => rawFile(ok, f32(1, 2), 100_000_001n), /exceeds the format's limit/],
    ['a header length past the end', () => rawFile(ok, f32(1, 2), 4096n), /runs past the end/],
    ['a header that is not UTF-8', () => rawFile(Uint8Array.from([0x7b, 0xff, 0x7d])), /not valid UTF-8/],
    ['a header not starting with {', () => rawFile(` ${ok}`, f32(1, 2)), /does not start with/],
    ['a header that is not JSON', () => rawFile('{"x":', f32(1, 2)), /not valid JSON/],
    [
      'a dtype gpugroup cannot hold',
      () => rawFile('{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}', new Uint8Array(2)),
      /dtype BOOL is a safetensors dtype gpugroup has no tensor type for; supported: U8, I8/,
    ],
    [
      'an unknown dtype',
      () => rawFile('{"m":{"dtype":"F12","shape":[2],"data_offsets":[0,2]}}', new Uint8Array(2)),
      /dtype F12 is not a dtype/,
    ],
    [
      'offsets that do not match the shape',
      () => rawFile('{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f32(1, 2)),
      /'x': F32 \[3\] is 12 bytes but data_offsets span 8/,
    ],
    [
      'a gap between tensors',
      () =>
        rawFile(
          '{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"y":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}',
          new Uint8Array(5),
        ),
      /'y': data_offsets start at 3, expected 2/,
    ],
    [
      'overlapping tensors',
      () =>
        rawFile(
          '{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"y":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}',
          new Uint8Array(3),
        ),
      /data_offsets start at 1, expected 2/,
    ],
    ['data past the last tensor', () => rawFile(ok, f32(1, 2, 3)), /cover 8 data bytes but the file holds 12/],
    ['data short of the last tensor', () => rawFile(ok, f32(1)), /cover 8 data bytes but the file holds 4/],
    [
      'missing data_offsets',
      () => rawFile('{"x":{"dtype":"F32","shape":[2]}}', f32(1, 2)),
      /'x': data_offsets must be two/,
    ],
    ['a negative dim', () => rawFile('{"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', f32(1, 2)), /expected/],
    ['non-string metadata', () => rawFile('{"__metadata__":{"a":1}}'), /__metadata__.a is not a string/],
  ])('%s', async (_what, make, message) => {
    const path = make();
    const err = await loadSafetensors(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).path).toBe(path);
    expect((err as Error).message).toMatch(message);
    expect((err as SafetensorsError).code).toBe('GPUGROUP_SAFETENSORS');
  });

  it('a missing file names itself', async () => {
    await expect(loadSafetensors(join(dir, 'nope.safetensors'))).rejects.toThrow(/nope.safetensors: cannot open/);
  });
});
