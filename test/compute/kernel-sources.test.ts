// Every generated kernel source (each op × dtype × variant) compiles with nvcc for sm_90:
// the same C++ NVRTC gets on the device, checked here without a GPU. Skips where nvcc
// is absent.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CTYPES } from '../../src/compute/ctypes.ts';
import { elementwiseSource, reduceRowsSource, reduceStridedSource, softmaxSource } from '../../src/compute/kernels.ts';
import { BINARY, UNARY } from '../../src/compute/ops-table.ts';
import { DTYPES } from '../../src/tensor/index.ts';

function findNvcc(): string | null {
  for (const p of ['nvcc', '/usr/local/bin/nvcc', '/usr/local/cuda/bin/nvcc']) {
    try {
      execFileSync(p, ['--version'], { stdio: 'ignore' });
      return p;
    } catch {}
  }
  return null;
}
const nvcc = findNvcc();

/** Every generated source, concatenated into one translation unit per kind (kernel names are unique). */
function sources(): Record<string, string[]> {
  const out: Record<string, string[]> = { elementwise: [], cast: [], reduce: [], softmax: [] };
  const math = DTYPES.filter((d) => !d.startsWith('float8'));
  for (const d of math) {
    const t = CTYPES[d];
    const f = t.compute === 'double' ? '' : 'f';
    for (const [op, def] of [...Object.entries(BINARY), ...Object.entries(UNARY)]) {
      if (!t.float && !def.hostBig) continue;
      const binary = op in BINARY;
      for (const same of [true, false])
        for (const vec of [true, false])
          for (const withB of binary ? [true, false] : [false]) {
            const name = `k_${op}_${d}_${same}_${vec}_${withB}`;
            out.elementwise.push(
              elementwiseSource({
                name,
                a: t,
                b: withB ? t : undefined,
                scalar: t.compute,
                out: t,
                expr: def.c(f),
                same,
                vec,
              }),
            );
          }
    }
    for (const op of ['sum', 'mean', 'max']) {
      if (op === 'mean' && !t.float) continue;
      const spec = {
        name: '',
        in: t,
        out: t,
        acc: op === 'max' ? t.compute : t.accumulate,
        init: op === 'max' ? `(${t.compute})${t.lowest}` : '0',
        combine: op === 'max' ? '((q > p || q != q) ? q : p)' : 'p + q',
        finish: op === 'mean' ? `r / (${t.accumulate})n` : 'r',
      };
      out.reduce.push(reduceRowsSource({ ...spec, name: `r_${op}_${d}` }));
      out.reduce.push(reduceStridedSource({ ...spec, name: `s_${op}_${d}` }));
    }
    if (t.float) out.softmax.push(softmaxSource(`sm_${d}`, t));
  }
  for (const from of DTYPES)
    for (const to of DTYPES)
      for (const vec of [true, false])
        out.cast.push(
          elementwiseSource({
            name: `c_${from}_${to}_${vec}`,
            a: CTYPES[from],
            scalar: CTYPES[from].compute,
            out: CTYPES[to],
            expr: 'x',
            same: true,
            vec,
          }),
        );
  return out;
}

describe.skipIf(!nvcc)('generated kernel sources', () => {
  const all = sources();
  it.each(Object.keys(all))(
    '%s kernels compile with nvcc --ptx -arch=sm_90',
    (kind) => {
      const dir = mkdtempSync(join(tmpdir(), 'gg-kernels-'));
      try {
        // One translation unit per kind: each source in a namespace of its own, so that the
        // prelude each NVRTC program repeats does not collide (the kernels' names are unique).
        const unit = all[kind].map((src, i) => `namespace gg${i} {\n${src}\n}`).join('\n');
        const file = join(dir, `${kind}.cu`);
        writeFileSync(file, unit);
        execFileSync(nvcc!, ['--ptx', '-arch=sm_90', '-Werror', 'all-warnings', '-o', join(dir, `${kind}.ptx`), file], {
          stdio: 'pipe',
        });
        expect(all[kind].length).toBeGreaterThan(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    600_000,
  );
});

/** A printf("%g") number: inf, -inf and nan spelled the C way. */
function parseC(s: string): number {
  if (/nan/i.test(s)) return Number.NaN;
  if (/inf/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  return Number(s);
}

function findCxx(): string | null {
  for (const p of ['g++', 'c++', 'clang++']) {
    try {
      execFileSync(p, ['--version'], { stdio: 'ignore' });
      return p;
    } catch {}
  }
  return null;
}
const cxx = findCxx();

// The device's bfloat16 and fp8 conversions are plain integer and float code: compiled for
// the host with a few CUDA intrinsics defined, they must give the host table's bits for
// every fp8 pattern, and the host encoders' bits for a sweep of float32 values.
describe.skipIf(!cxx)('device conversions agree with the host', () => {
  it('bfloat16 and fp8 encode and decode bit for bit', async () => {
    const { PRELUDE } = await import('../../src/compute/ctypes.ts');
    const { floatToBfloat16, floatToE4m3, floatToE5m2, e4m3ToFloat, e5m2ToFloat } = await import(
      '../../src/tensor/index.ts'
    );
    const shim = `#include <cmath>
#include <cstdio>
#include <cstring>
#define __device__
#define __forceinline__ inline
static float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
`;
    // The float16 helpers are inline PTX: leave them out of the host build.
    const prelude = PRELUDE.replace(
      /__device__ __forceinline__ float gg_h2f[\s\S]*?\n}\n__device__ __forceinline__ unsigned short gg_f2h[\s\S]*?\n}\n/,
      '',
    );
    const main = `
int main() {
  for (int b = 0; b < 256; b++) printf("%.17g %.17g\\n", gg_e4m3_to_f((unsigned char)b), gg_e5m2_to_f((unsigned char)b));
  float v; while (scanf("%f", &v) == 1) printf("%u %u %u\\n", gg_f2bf(v), gg_f_to_e4m3(v), gg_f_to_e5m2(v));
}`;
    const dir = mkdtempSync(join(tmpdir(), 'gg-conv-'));
    try {
      writeFileSync(join(dir, 'c.cpp'), shim + prelude + main);
      execFileSync(cxx!, ['-O1', '-o', join(dir, 'c'), join(dir, 'c.cpp')], { stdio: 'pipe' });
      const inputs: number[] = [
        0,
        -0,
        1,
        -1,
        0.5,
        448,
        449,
        464,
        479.9,
        480,
        57344,
        61439,
        61440,
        1e-9,
        2 ** -10,
        2 ** -17,
      ];
      const f32 = new Float32Array(1);
      for (let i = 0; i < 4000; i++) {
        f32[0] = ((Math.sin(i * 12.9898) * 43758.5453) % 1) * 2 ** ((i % 40) - 20);
        inputs.push(f32[0]);
      }
      const out = execFileSync(join(dir, 'c'), {
        input: inputs.map((x) => (Object.is(x, -0) ? '-0' : x.toPrecision(9))).join('\n'),
      })
        .toString()
        .trim()
        .split('\n');
      for (let b = 0; b < 256; b++) {
        const [e4, e5] = out[b].split(' ').map(parseC);
        expect([b, e4]).toEqual([b, Number.isNaN(e4m3ToFloat(b)) ? Number.NaN : e4m3ToFloat(b)]);
        expect([b, e5]).toEqual([b, Number.isNaN(e5m2ToFloat(b)) ? Number.NaN : e5m2ToFloat(b)]);
      }
      inputs.forEach((x, i) => {
        const v = Math.fround(Number(Object.is(x, -0) ? '-0' : x.toPrecision(9)));
        expect([x, out[256 + i]]).toEqual([x, `${floatToBfloat16(v)} ${floatToE4m3(v)} ${floatToE5m2(v)}`]);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
