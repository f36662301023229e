import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSetting, SETTINGS, setting, settingAtFirstUse } from '../src/env.ts';
import { InvalidArgumentError } from '../src/errors.ts';
import { getPpIndices } from '../src/parallel/index.ts';

const root = join(import.meta.dirname, '..');

/** Every `GPUGROUP_*` name the given folder's .ts files mention (recursively). */
function mentioned(dir: string, pattern: RegExp): Set<string> {
  const names = new Set<string>();
  for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const text = readFileSync(join(entry.parentPath, entry.name), 'utf8');
    for (const m of text.matchAll(pattern)) names.add(m[1]!);
  }
  return names;
}

describe('settings (src/env.ts)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of Object.keys(SETTINGS)) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  it('parses each type and falls back to the default when unset or empty', () => {
    expect(parseSetting('GPUGROUP_MQ_CHUNK_BYTES', undefined)).toBe(4 << 20);
    expect(parseSetting('GPUGROUP_MQ_CHUNK_BYTES', '')).toBe(4 << 20);
    expect(parseSetting('GPUGROUP_MQ_CHUNK_BYTES', '1048576')).toBe(1 << 20);
    expect(parseSetting('GPUGROUP_MQ_CHUNKS', ' 8 ')).toBe(8);
    expect(parseSetting('GPUGROUP_MQ_SPIN_MS', '0.5')).toBe(0.5);
    expect(parseSetting('GPUGROUP_CACHE_MAX_BYTES', '0')).toBe(0);
    expect(parseSetting('GPUGROUP_LOG', 'DEBUG')).toBe('debug');
    expect(parseSetting('GPUGROUP_LOG', undefined)).toBe('');
    expect(parseSetting('GPUGROUP_BACKEND', undefined)).toBe('auto');
    expect(parseSetting('GPUGROUP_NODE_ID', 'n1')).toBe('n1');
    expect(parseSetting('GPUGROUP_NCCL_SO_PATH', undefined)).toBeUndefined();
  });

  it('rejects a value with a unit, naming the variable', () => {
    let err: unknown;
    try {
      parseSetting('GPUGROUP_MQ_CHUNK_BYTES', '4MiB');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).argument).toBe('GPUGROUP_MQ_CHUNK_BYTES');
    expect((err as Error).message).toBe(
      "GPUGROUP_MQ_CHUNK_BYTES: expected a whole number of bytes (digits only, e.g. 4194304) >= 1, got '4MiB'",
    );
  });

  it('rejects negative, fractional, below-minimum and unknown values', () => {
    expect(() => parseSetting('GPUGROUP_MQ_CHUNKS', '-1')).toThrow(
      "GPUGROUP_MQ_CHUNKS: expected an integer >= 1, got '-1'",
    );
    expect(() => parseSetting('GPUGROUP_MQ_CHUNKS', '0')).toThrow('>= 1');
    expect(() => parseSetting('GPUGROUP_CACHE_MAX_BYTES', '1.5')).toThrow('GPUGROUP_CACHE_MAX_BYTES');
    expect(() => parseSetting('GPUGROUP_POLL_MS', 'fast')).toThrow(
      "GPUGROUP_POLL_MS: expected a number of milliseconds, got 'fast'",
    );
    expect(() => parseSetting('GPUGROUP_LOG', 'verbose')).toThrow(
      "GPUGROUP_LOG: expected one of error, warn, info, debug, got 'verbose'",
    );
    expect(() => parseSetting('GPUGROUP_BACKEND', 'gloo')).toThrow(
      "GPUGROUP_BACKEND: expected one of auto, nccl, cpu, got 'gloo'",
    );
  });

  it('reads the variable when asked, not at import', () => {
    process.env.GPUGROUP_MQ_CHUNKS = '3';
    expect(setting('GPUGROUP_MQ_CHUNKS')).toBe(3);
    process.env.GPUGROUP_MQ_CHUNKS = '5';
    expect(setting('GPUGROUP_MQ_CHUNKS')).toBe(5);
    process.env.GPUGROUP_MQ_CHUNKS = 'x';
    expect(() => setting('GPUGROUP_MQ_CHUNKS')).toThrow(InvalidArgumentError);
  });

  it('keeps the first value for hot paths', () => {
    process.env.GPUGROUP_MQ_SPIN_MS = '7';
    expect(settingAtFirstUse('GPUGROUP_MQ_SPIN_MS')).toBe(7);
    process.env.GPUGROUP_MQ_SPIN_MS = '9';
    expect(settingAtFirstUse('GPUGROUP_MQ_SPIN_MS')).toBe(7);
    expect(setting('GPUGROUP_MQ_SPIN_MS')).toBe(9);
  });

  it("reads vLLM's name when gpugroup's is unset", () => {
    delete process.env.GPUGROUP_PP_LAYER_PARTITION;
    process.env.VLLM_PP_LAYER_PARTITION = '3,1';
    try {
      expect(setting('GPUGROUP_PP_LAYER_PARTITION')).toBe('3,1');
      expect(getPpIndices(4, 0, 2)).toEqual([0, 3]);
      process.env.GPUGROUP_PP_LAYER_PARTITION = '1,3';
      expect(getPpIndices(4, 0, 2)).toEqual([0, 1]);
    } finally {
      delete process.env.VLLM_PP_LAYER_PARTITION;
    }
  });

  it('lists every GPUGROUP_ variable the library reads, and reads none elsewhere', () => {
    const listed = new Set(Object.keys(SETTINGS));
    // native/ reads the library paths itself (it sits below src/env.ts): same names.
    for (const name of mentioned('native', /envVar: '(GPUGROUP_\w+)'/g)) expect(listed).toContain(name);
    for (const name of mentioned('src', /setting(?:AtFirstUse)?\('(GPUGROUP_\w+)'\)/g)) expect(listed).toContain(name);
    const direct = [...mentioned('src', /process\.env\.(GPUGROUP_\w+)/g)];
    expect(direct).toEqual([]);
    for (const [name, spec] of Object.entries(SETTINGS)) {
      expect(name).toMatch(/^GPUGROUP_[A-Z_]+$/);
      expect(spec.doc.length).toBeGreaterThan(10);
    }
  });
});
