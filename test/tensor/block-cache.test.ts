// Size classes of the device block cache: 512 B steps up to 1 MiB, 2 MiB steps up to
// 64 MiB (torch's large-block rounding), exact sizes above (never cached).
import { describe, expect, it } from 'vitest';
import { sizeClass } from '../../src/tensor/block-cache.ts';

const MiB = 1 << 20;

describe('device block size classes', () => {
  it('rounds small requests to 512 B and large ones to 2 MiB, up to 64 MiB', () => {
    expect(sizeClass(1)).toBe(512);
    expect(sizeClass(513)).toBe(1024);
    expect(sizeClass(MiB)).toBe(MiB);
    expect(sizeClass(MiB + 1)).toBe(2 * MiB);
    expect(sizeClass(8 * MiB)).toBe(8 * MiB);
    expect(sizeClass(63 * MiB)).toBe(64 * MiB);
    expect(sizeClass(64 * MiB)).toBe(64 * MiB);
    expect(sizeClass(64 * MiB + 1)).toBe(64 * MiB + 1);
  });
});
