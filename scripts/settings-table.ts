/**
 * The settings table of the README, made from src/env.ts's SETTINGS (the one home of
 * every GPUGROUP_* variable): `npm run docs:settings` writes it between the markers,
 * and test/docs/settings.test.ts fails when the README's table differs from it.
 */
import { SETTINGS, type SettingSpec } from '../src/env.ts';

export const START = '<!-- settings:start -->';
export const END = '<!-- settings:end -->';

function bytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', 1 << 30],
    ['MiB', 1 << 20],
    ['KiB', 1 << 10],
  ] as const)
    if (n >= size && n % size === 0) return `${n} (${n / size} ${unit})`;
  return String(n);
}

function type(spec: SettingSpec): string {
  if (spec.type === 'enum') return (spec.values ?? []).filter((v) => v !== '').join(' \\| ');
  return spec.type + (spec.min ? ` ≥ ${spec.min}` : '');
}

function defaultOf(spec: SettingSpec): string {
  if (spec.default === undefined || spec.default === '') return '–';
  return `\`${spec.type === 'bytes' && typeof spec.default === 'number' ? bytes(spec.default) : spec.default}\``;
}

/** The Markdown table, one row per setting in SETTINGS's order. */
export function settingsTable(): string {
  const rows = Object.entries(SETTINGS as Record<string, SettingSpec>).map(
    ([name, spec]) =>
      `| \`${name}\` | ${type(spec)} | ${defaultOf(spec)} | ${spec.doc.replaceAll('|', '\\|')}${spec.fallback ? ` When unset, \`${spec.fallback}\` is read.` : ''} |`,
  );
  return ['| variable | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The cells of the table between the markers of `text`, trimmed (column padding ignored). */
export function tableCells(text: string): string[][] {
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start === -1 || end < start) throw new Error(`no ${START} … ${END} markers`);
  return text
    .slice(start + START.length, end)
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[\s|:-]+\|$/.test(line))
    .map((line) =>
      line
        .split(/(?<!\\)\|/)
        .slice(1, -1)
        .map((c) => c.trim()),
    );
}

/** `text` with the table between its markers replaced by {@link settingsTable}. */
export function withSettingsTable(text: string): string {
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start === -1 || end < start) throw new Error(`no ${START} … ${END} markers`);
  return `${text.slice(0, start + START.length)}\n${settingsTable()}\n${text.slice(end)}`;
}
