import { describe, expect, it, vi } from 'vitest';

// Count koffi.load calls: importing the package must load nothing (libc included).
const loads = vi.hoisted(() => [] as string[]);
vi.mock('koffi', async (importOriginal) => {
  const real = ((await importOriginal()) as { default: Record<string, unknown> }).default;
  const load = real.load as (path: string) => unknown;
  return {
    default: {
      ...real,
      load: (path: string) => {
        loads.push(path);
        return load(path);
      },
    },
  };
});

describe('libc bindings (native/libc.ts)', () => {
  it('importing gpugroup loads no library; libc is bound on first use', async () => {
    const pkg = await import('../../src/index.ts');
    expect(typeof pkg.launchGroup).toBe('function');
    expect(loads).toEqual([]);
    const { libc, viewMemory, lastErrno } = await import('../../native/index.ts');
    expect(libc().sched_yield()).toBe(0);
    expect(loads).toEqual(['libc.so.6']);
    expect(libc()).toBe(libc());
    expect(loads).toEqual(['libc.so.6']);
    // An anonymous private mapping (MAP_PRIVATE | MAP_ANONYMOUS, fd -1) seen through viewMemory.
    const raw = libc().mmap(null, 4096, 0x3, 0x02 | 0x20, -1, 0);
    const address = BigInt(raw as bigint);
    expect(address).not.toBe(0n);
    const bytes = new Uint8Array(viewMemory(address, 4096));
    bytes[4095] = 7;
    expect(new Uint8Array(viewMemory(address, 4096))[4095]).toBe(7);
    expect(libc().munmap(address, 4096)).toBe(0);
    expect(libc().munmap(3n, 4096)).toBe(-1); // not page-aligned: EINVAL
    expect(lastErrno()).toBe(22);
  });
});
