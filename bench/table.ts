/**
 * nccl-tests' table: one row per measurement with size, count, type, time, algbw and
 * busbw, so a figure reads the same as the baseline it is compared with.
 */

/** One row: `bytes` as nccl-tests counts them (the whole buffer), `us` per operation. */
export interface TableRow {
  op: string;
  bytes: number;
  /** Elements (nccl-tests' count column). */
  count: number;
  dtype: string;
  us: number;
  busbw: number;
  /** Leading column, e.g. the rank mode of the CPU suite. */
  label?: string;
}

const COLUMNS = ['size(B)', 'count', 'type', 'op', 'time(us)', 'algbw(GB/s)', 'busbw(GB/s)'];
const WIDTHS = [12, 12, 8, 16, 11, 12, 12];

/** The header line (prefixed with `#`, as nccl-tests prints it). */
export function tableHeader(label = ''): string {
  return `#${label ? ` ${label}` : ''}${COLUMNS.map((c, i) => c.padStart(WIDTHS[i])).join(' ')}`;
}

/** One formatted row; algbw is bytes / time. */
export function tableLine(row: TableRow): string {
  const algbw = row.us > 0 ? row.bytes / row.us / 1e3 : 0;
  const cells = [
    String(row.bytes),
    String(row.count),
    row.dtype,
    row.op,
    row.us.toFixed(2),
    algbw.toFixed(2),
    row.busbw.toFixed(2),
  ];
  return ` ${row.label ? `${row.label} ` : ''}${cells.map((c, i) => c.padStart(WIDTHS[i])).join(' ')}`;
}
