/** Percentiles of a list of samples (microseconds). */
export function percentiles(samples: number[]): { p50: number; p99: number; min: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { p50: +at(0.5).toFixed(2), p99: +at(0.99).toFixed(2), min: +s[0].toFixed(2) };
}
