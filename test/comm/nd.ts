// Plain index arithmetic for expected values: no Tensor code involved.
export function strides(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Concatenation of row-major arrays along `dim`. */
export function concat(
  parts: { shape: number[]; values: number[] }[],
  dim: number,
): { shape: number[]; values: number[] } {
  const d = dim < 0 ? dim + parts[0].shape.length : dim;
  const shape = [...parts[0].shape];
  shape[d] = parts.reduce((a, p) => a + p.shape[d], 0);
  const outer = shape.slice(0, d).reduce((a, b) => a * b, 1);
  const values: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const block = p.shape.slice(d).reduce((a, b) => a * b, 1);
      values.push(...p.values.slice(o * block, (o + 1) * block));
    }
  }
  return { shape, values };
}

/** The `index`-th of `n` chunks along `dim` (or of sizes[] slices). */
export function chunk(
  x: { shape: number[]; values: number[] },
  dim: number,
  index: number,
  sizes: number[],
): { shape: number[]; values: number[] } {
  const d = dim < 0 ? dim + x.shape.length : dim;
  const start = sizes.slice(0, index).reduce((a, b) => a + b, 0);
  const shape = [...x.shape];
  shape[d] = sizes[index];
  const outer = x.shape.slice(0, d).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(d + 1).reduce((a, b) => a * b, 1);
  const values: number[] = [];
  for (let o = 0; o < outer; o++) {
    const base = o * x.shape[d] * inner;
    values.push(...x.values.slice(base + start * inner, base + (start + sizes[index]) * inner));
  }
  return { shape, values };
}

/** Rank r's input as the fixture makes it: (i % 50) + 10 r. */
export function input(rank: number, shape: number[]): { shape: number[]; values: number[] } {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, values: Array.from({ length: n }, (_, i) => (i % 50) + 10 * rank) };
}

/** Element-wise sum over ranks, wrapped like the dtype's storage. */
export function sum(world: number, shape: number[], dtype: string): { shape: number[]; values: number[] } {
  const parts = Array.from({ length: world }, (_, r) => input(r, shape).values);
  const raw = parts[0].map((_, i) => parts.reduce((a, p) => a + p[i], 0));
  const wrap = dtype === 'int8' ? Int8Array.from(raw) : dtype === 'uint8' ? Uint8Array.from(raw) : raw;
  return { shape, values: Array.from(wrap) };
}
