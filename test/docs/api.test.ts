// docs/api.md maps the public API: every name src/index.ts exports (values and types) appears in it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as gpugroup from '../../src/index.ts';

const api = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
const index = readFileSync(new URL('../../src/index.ts', import.meta.url), 'utf8');
/** Names of `export type { A, B as C }` lists (the exported name: C). */
const typeNames = [...index.matchAll(/export type \{([^}]*)\}/g)].flatMap((m) =>
  m[1]!
    .split(',')
    .map(
      (s) =>
        s
          .trim()
          .split(/\s+as\s+/)
          .pop()!,
    )
    .filter(Boolean),
);
const named = (n: string) => new RegExp(`\\b${n}\\b`).test(api);

describe('docs/api.md', () => {
  it('names every value src/index.ts exports', () => {
    expect(Object.keys(gpugroup).filter((n) => !named(n))).toEqual([]);
  });

  it('names every type src/index.ts exports', () => {
    expect(typeNames.length).toBeGreaterThan(10);
    expect(typeNames.filter((n) => !named(n))).toEqual([]);
  });
});
