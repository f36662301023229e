/**
 * The comparison table of bench/gpu-one.sh: reads every *.jsonl in OUTDIR (gpugroup's
 * suites and the baselines measured in the same device call), and prints, for each
 * gpugroup figure with a baseline, the baseline figures, the ratio (> 1: gpugroup
 * ahead) and, where the project has a goal for it, whether the goal is met. Rows join
 * on (op, world, bytes, graph, tensors), as ../shared baselines' compare.mjs joins them.
 * Usage: npx tsx bench/gpu-one-table.ts OUTDIR
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

interface Row {
  impl: string;
  op: string;
  world?: number;
  bytes?: number;
  graph?: boolean;
  tensors?: number;
  us?: number;
  p50_us?: number;
  s?: number;
  busbw?: number;
  [k: string]: unknown;
}

type Lookup = (impl: string, patch?: Partial<Row>) => Row | undefined;

/** A goal: which gpugroup rows it covers, its words, and the test (true: met). */
interface Goal {
  applies: (r: Row) => boolean;
  text: string;
  met: (r: Row, find: Lookup) => boolean | undefined;
}

const us = (r: Row | undefined): number | undefined => r?.us;
/** gpugroup's copy rows, each against torch's row of its direction (h2d or d2h). */
const COPY_OPS = new Set(['h2d', 'd2h', 'h2d_to', 'd2h_to', 'h2d_async', 'd2h_async']);
const COLLECTIVES = new Set(['all_reduce', 'broadcast', 'all_gather', 'reduce_scatter']);

/** The goals of the one-GPU work, one line each. */
const GOALS: Goal[] = [
  {
    applies: (r) => COPY_OPS.has(r.op) && (r.bytes ?? 0) >= 1 << 20,
    text: '>= 2x torch (pageable)',
    met: (r, find) => {
      const t = us(find('torch', { op: r.op.slice(0, 3) }));
      return t === undefined || r.us === undefined ? undefined : t / r.us >= 2;
    },
  },
  {
    applies: (r) => r.op === 'h2d' && r.bytes === 4096,
    text: '<= torch time',
    met: (r, find) => {
      const t = us(find('torch'));
      return t === undefined || r.us === undefined ? undefined : r.us <= t;
    },
  },
  {
    applies: (r) => r.op === 'h2d_pinned' || r.op === 'd2h_pinned',
    text: '>= 0.9x raw pinned cudaMemcpyAsync',
    met: (r, find) => {
      const raw = us(find('cuda'));
      return raw === undefined || r.us === undefined ? undefined : raw / r.us >= 0.9;
    },
  },
  {
    applies: (r) => COLLECTIVES.has(r.op) && r.world === 1 && !r.graph && (r.bytes ?? 0) <= 65536,
    text: '<= nccl-tests + 1 us',
    met: (r, find) => {
      const n = us(find('nccl-tests'));
      return n === undefined || r.us === undefined ? undefined : r.us <= n + 1;
    },
  },
  {
    applies: (r) => r.op === 'all_reduce_host_cost',
    text: '<= raw koffi ncclAllReduce + 1 us',
    met: (r, find) => {
      const raw = us(find('raw-koffi'));
      return raw === undefined || r.us === undefined ? undefined : r.us <= raw + 1;
    },
  },
  {
    applies: (r) => COLLECTIVES.has(r.op) && r.world === 1 && r.graph === true,
    text: '<= 1.05x nccl-tests -G',
    met: (r, find) => {
      const n = us(find('nccl-tests'));
      return n === undefined || r.us === undefined ? undefined : r.us <= 1.05 * n;
    },
  },
];

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: npx tsx bench/gpu-one-table.ts OUTDIR\n');
  process.exit(2);
}
const rows: Row[] = readdirSync(dir)
  .filter((f) => f.endsWith('.jsonl'))
  .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
  .filter((l) => l.trim().startsWith('{'))
  .flatMap((l) => {
    try {
      return [JSON.parse(l) as Row];
    } catch {
      return [];
    }
  });

const key = (r: Partial<Row>) => [r.op, r.world ?? 1, r.bytes ?? '', r.graph ?? false, r.tensors ?? ''].join('|');
const byImpl = new Map<string, Map<string, Row>>();
for (const r of rows) {
  if (!byImpl.has(r.impl)) byImpl.set(r.impl, new Map());
  byImpl.get(r.impl)?.set(key(r), r);
}

for (const r of rows.filter((x) => x.op === 'libraries')) {
  const { impl, op, ...rest } = r;
  console.log(`# ${impl} ${op}: ${JSON.stringify(rest)}`);
}

const metric = (r: Row): 'us' | 'p50_us' | 's' | undefined =>
  r.us !== undefined ? 'us' : r.p50_us !== undefined ? 'p50_us' : r.s !== undefined ? 's' : undefined;
const fmt = (v: number | undefined) => (v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(2));
const size = (b: number | undefined) =>
  b === undefined ? '' : b >= 1 << 20 ? `${b / (1 << 20)} MiB` : b >= 1024 ? `${b / 1024} KiB` : `${b} B`;

const ours = [...(byImpl.get('gpugroup')?.values() ?? [])].filter((r) => metric(r) !== undefined);
const baselines = [...byImpl.keys()].filter((k) => k !== 'gpugroup' && k !== 'gpugroup-pageable');
const header = ['op', 'size', 'graph', 'metric', 'gpugroup', ...baselines.map((b) => `${b} (ratio)`), 'goal', 'met'];
const lines: string[][] = [header];
let met = 0;
let missed = 0;
for (const r of ours) {
  const m = metric(r) as 'us' | 'p50_us' | 's';
  const find: Lookup = (impl, patch = {}) => byImpl.get(impl)?.get(key({ ...r, ...patch }));
  const cells = [r.op, size(r.bytes), r.graph ? 'graph' : '', m, fmt(r[m] as number)];
  let any = false;
  for (const b of baselines) {
    const v = find(b)?.[m] as number | undefined;
    if (v !== undefined) any = true;
    cells.push(v === undefined ? '-' : `${fmt(v)} (${(v / (r[m] as number)).toFixed(2)}x)`);
  }
  const goal = GOALS.find((g) => g.applies(r));
  const ok = goal?.met(r, find);
  if (ok === true) met++;
  if (ok === false) missed++;
  cells.push(goal?.text ?? '', ok === undefined ? '' : ok ? 'yes' : 'NO');
  if (any || goal) lines.push(cells);
}
const widths = header.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
for (const l of lines) console.log(l.map((c, i) => (c ?? '').padEnd(widths[i])).join('  '));
const pageable = [...(byImpl.get('gpugroup-pageable')?.values() ?? [])];
if (pageable.length > 0) {
  console.log('\n# staging off (gpugroup-pageable), for reference:');
  for (const r of pageable) console.log(`  ${r.op} ${size(r.bytes)}: ${fmt(r.us)} us (${r.GBps} GB/s)`);
}
// gpugroup's own cost per op: each eager world-1 collective minus the raw koffi loop of
// the same size, timed in the same rank with the two loops taking turns.
const own = ours
  .filter((r) => COLLECTIVES.has(r.op) && r.world === 1 && !r.graph && r.us !== undefined)
  .flatMap((r) => {
    const raw = byImpl.get('raw-koffi')?.get(key(r))?.us;
    return raw === undefined ? [] : [(r.us as number) - raw];
  })
  .sort((a, b) => a - b);
if (own.length > 0) {
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`;
  const mid = own.length >> 1;
  const median = own.length % 2 === 1 ? own[mid] : (own[mid - 1] + own[mid]) / 2;
  console.log(
    `\n# gpugroup's own cost per eager op over the raw koffi loop (same rank, loops in turns), ${own.length} sizes: ` +
      `median ${signed(median)} us, from ${signed(own[0])} to ${signed(own[own.length - 1])}`,
  );
}
console.log(`\nratios: baseline time / gpugroup time (> 1: gpugroup faster). goals met: ${met}, missed: ${missed}`);
