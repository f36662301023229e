import { describe, expect, it } from 'vitest';
import {
  CudaError,
  LibraryNotFoundError,
  cuda,
  cudaDeviceCount,
  formatNcclVersion,
  ncclConfig,
  uniqueIdFromBytes,
} from '../../native/index.ts';
import { loadLibrary } from '../../native/load.ts';

// This CI machine has libcudart but no driver and no libnccl: both failure paths are real here.
const hasGpu = cudaDeviceCount() > 0;

describe('library discovery', () => {
  it('reports every path tried and the variable to set when a library is missing', () => {
    let caught: unknown;
    try {
      loadLibrary({
        name: 'libdoesnotexist',
        envVar: 'GPUGROUP_TEST_SO_PATH',
        sonames: ['libdoesnotexist.so.7'],
        pythonRelative: ['nvidia/none/lib/libdoesnotexist.so.7'],
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(LibraryNotFoundError);
    const err = caught as LibraryNotFoundError;
    expect(err.code).toBe('GPUGROUP_LIBRARY_NOT_FOUND');
    expect(err.tried[0]).toMatch(/^libdoesnotexist\.so\.7 \(/);
    expect(err.tried.some((p) => p.startsWith('/usr/local/cuda/lib64/libdoesnotexist.so.7'))).toBe(true);
    expect(err.message).toContain('Set GPUGROUP_TEST_SO_PATH');
  });

  it('tries only the forced path when the environment names one', () => {
    process.env.GPUGROUP_TEST_SO_PATH = '/nowhere/libforced.so';
    try {
      expect(() =>
        loadLibrary({ name: 'libforced', envVar: 'GPUGROUP_TEST_SO_PATH', sonames: ['libc.so.6'], pythonRelative: [] }),
      ).toThrow(/\/nowhere\/libforced\.so \(no such file\)/);
    } finally {
      delete process.env.GPUGROUP_TEST_SO_PATH;
    }
  });

  it.runIf(!hasGpu)('turns a missing driver into CudaError with name, code and call', () => {
    const rt = cuda();
    const version = new Int32Array(1);
    rt.cudaRuntimeGetVersion(version);
    expect(version[0]).toBeGreaterThanOrEqual(12000);
    let caught: unknown;
    try {
      rt.cudaGetDeviceCount(new Int32Array(1));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(CudaError);
    const err = caught as CudaError;
    expect(err.result).toBe(35);
    expect(err.resultName).toBe('cudaErrorInsufficientDriver');
    expect(err.call).toBe('cudaGetDeviceCount');
    expect(err.message).toMatch(/driver/i);
    expect(cudaDeviceCount()).toBe(0);
  });
});

describe('NCCL helpers', () => {
  it('formats version codes without dropping zeros', () => {
    expect(formatNcclVersion(22803)).toBe('2.28.3');
    expect(formatNcclVersion(22809)).toBe('2.28.9');
    expect(formatNcclVersion(22700)).toBe('2.27.0');
    expect(formatNcclVersion(21903)).toBe('2.19.3');
    expect(formatNcclVersion(2708)).toBe('2.7.8');
    expect(() => formatNcclVersion(0)).toThrow(RangeError);
  });

  it('lays out ncclConfig_t as NCCL_CONFIG_INITIALIZER does', () => {
    const bytes = ncclConfig({ blocking: 0 });
    const view = new DataView(bytes.buffer);
    expect(bytes.length).toBe(80);
    expect(view.getBigUint64(0, true)).toBe(80n);
    expect(view.getUint32(8, true)).toBe(0xcafebeef);
    expect(view.getUint32(12, true)).toBe(22800);
    expect(view.getInt32(16, true)).toBe(0); // blocking
    expect(view.getInt32(20, true)).toBe(-2147483648); // cgaClusterSize undefined
    expect(view.getBigUint64(32, true)).toBe(0n); // netName NULL
    expect(view.getBigUint64(48, true)).toBe(0n); // commName NULL
    expect(view.getInt32(76, true)).toBe(-2147483648);
  });

  it('accepts exactly 128 bytes as a unique id', () => {
    expect(uniqueIdFromBytes(new Uint8Array(128)).internal.length).toBe(128);
    expect(() => uniqueIdFromBytes(new Uint8Array(127))).toThrow('Expected 128 bytes for ncclUniqueId, got 127 bytes');
  });
});

describe('library search patterns', () => {
  it('expands * in any segment against the entries present, sorted', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { expand } = await import('../../native/load.ts');
    const root = mkdtempSync(join(tmpdir(), 'gg-site-'));
    try {
      for (const d of ['nvidia/cu13/lib', 'nvidia/cublas/lib', 'nvidia/nccl/lib'])
        mkdirSync(join(root, d), { recursive: true });
      writeFileSync(join(root, 'nvidia/cu13/lib/libnvrtc-builtins.so.13.0'), '');
      writeFileSync(join(root, 'nvidia/cu13/lib/libnvrtc.so.13'), '');
      writeFileSync(join(root, 'nvidia/cublas/lib/libcublas.so.12'), '');
      expect(expand(root, 'nvidia/*/lib/libcublas.so.12')).toEqual([
        join(root, 'nvidia/cu13/lib/libcublas.so.12'),
        join(root, 'nvidia/cublas/lib/libcublas.so.12'),
        join(root, 'nvidia/nccl/lib/libcublas.so.12'),
      ]);
      expect(expand(root, 'nvidia/*/lib/libnvrtc-builtins.so.13*')).toEqual([
        join(root, 'nvidia/cu13/lib/libnvrtc-builtins.so.13.0'),
      ]);
      expect(expand(root, 'nvidia/none/lib/x.so')).toEqual([join(root, 'nvidia/none/lib/x.so')]);
      expect(expand(root, 'missing/*/x.so')).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a device compute library that is missing is a LibraryNotFoundError naming it and its variable', async () => {
    const { cublas, nvrtc } = await import('../../native/index.ts');
    for (const [load, lib, env] of [
      [cublas, 'libcublas', 'GPUGROUP_CUBLAS_SO_PATH'],
      [nvrtc, 'libnvrtc', 'GPUGROUP_NVRTC_SO_PATH'],
    ] as const) {
      process.env[env] = '/nowhere/lib.so';
      try {
        let caught: unknown;
        try {
          load();
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(LibraryNotFoundError);
        expect((caught as LibraryNotFoundError).library).toBe(lib);
        expect((caught as Error).message).toContain(`Set ${env}`);
      } finally {
        delete process.env[env];
      }
    }
  });
});
