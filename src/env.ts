/**
 * Every `GPUGROUP_*` setting in one typed table, as vLLM keeps its variables in
 * `vllm/envs.py` and NCCL its parameters in `NCCL_PARAM`: name, type, default and one
 * line of doc. Nothing else in `src/` reads `process.env.GPUGROUP_*`; the README's
 * settings table is generated from {@link SETTINGS}.
 *
 * Values are read lazily: {@link setting} looks the variable up when called (so a
 * program may set it after importing gpugroup) and parses each distinct value once. A
 * value that does not parse is an {@link InvalidArgumentError} naming the variable,
 * never a NaN that surfaces later. Callers on hot paths keep the value they read
 * first (a `process.env` lookup costs a few hundred ns).
 *
 * The library paths (`*_SO_PATH`) are listed here for their documentation and
 * validation, but `native/load.ts` reads them itself: the FFI layer sits below this
 * module and imports nothing from `src/` (test/env.test.ts checks the names agree).
 * `NCCL_*` variables are NCCL's own and pass through untouched. Variables that only
 * the tests and benches read (`GPUGROUP_TEST_*`, `GPUGROUP_BENCH_*`,
 * `GPUGROUP_STUB_GPUS`) are not settings of the library and are not listed.
 */
import { InvalidArgumentError } from './errors.ts';

/** How a setting's text is parsed. */
export type SettingType =
  /** A non-negative integer. */
  | 'int'
  /** A non-negative whole number of bytes (digits only: no unit suffix). */
  | 'bytes'
  /** A non-negative number of milliseconds (fractions allowed). */
  | 'ms'
  /** Free text, passed on as given. */
  | 'string'
  /** A file system path. */
  | 'path'
  /** One of a fixed list of words (case-insensitive), given by `values`. */
  | 'enum';

/** One row of {@link SETTINGS}. */
export interface SettingSpec {
  readonly type: SettingType;
  /** The value when the variable is unset or empty; `undefined`: no default (the caller decides). */
  readonly default: number | string | undefined;
  /** One line for the docs. */
  readonly doc: string;
  /** The accepted words of an `enum`. */
  readonly values?: readonly string[];
  /** Smallest accepted number (`int`, `bytes`, `ms`); default 0. */
  readonly min?: number;
  /** Another variable read when this one is unset (vLLM's own name for the same thing). */
  readonly fallback?: string;
}

/** The settings, by variable name. */
export const SETTINGS = {
  GPUGROUP_LOG: {
    type: 'enum',
    values: ['', 'error', 'warn', 'info', 'debug'],
    default: '',
    doc: 'Log level of the library (to stderr): error, warn, info or debug; unset: silent.',
  },
  GPUGROUP_BACKEND: {
    type: 'enum',
    values: ['auto', 'nccl', 'cpu'],
    default: 'auto',
    doc: 'Backend of initDistributedEnvironment when its options name none (set by `gpugroup run --backend`).',
  },
  GPUGROUP_NODE_ID: {
    type: 'string',
    default: '',
    doc: 'Node id added to the host name when deciding which ranks share memory (set by the launchers).',
  },
  GPUGROUP_NCCL_SO_PATH: {
    type: 'path',
    default: undefined,
    doc: 'Full path of libnccl to load instead of searching for it.',
  },
  GPUGROUP_CUDART_SO_PATH: {
    type: 'path',
    default: undefined,
    doc: 'Full path of libcudart to load instead of searching for it.',
  },
  GPUGROUP_CUDA_DRIVER_SO_PATH: {
    type: 'path',
    default: undefined,
    doc: 'Full path of libcuda (the driver) to load instead of searching for it.',
  },
  GPUGROUP_CUBLAS_SO_PATH: {
    type: 'path',
    default: undefined,
    doc: 'Full path of libcublas (device matmul) to load instead of searching for it.',
  },
  GPUGROUP_NVRTC_SO_PATH: {
    type: 'path',
    default: undefined,
    doc: 'Full path of libnvrtc (device kernels of the compute ops and compileKernel) to load instead of searching for it.',
  },
  GPUGROUP_MQ_CHUNK_BYTES: {
    type: 'bytes',
    min: 1,
    default: 4 << 20,
    doc: "Bytes of one chunk of a group's broadcast message queue (vLLM: 4 MiB); larger messages go out of band.",
  },
  GPUGROUP_MQ_CHUNKS: {
    type: 'int',
    min: 1,
    default: 6,
    doc: "Chunks in a group's broadcast message queue ring (vLLM: 6).",
  },
  GPUGROUP_MQ_SPIN_MS: {
    type: 'ms',
    default: 2,
    doc: 'How long a message queue wait spins before it yields to the event loop.',
  },
  GPUGROUP_POLL_MS: {
    type: 'ms',
    default: 5,
    doc: 'How long a stream or event wait polls on setImmediate turns before backing off to 1 ms timers.',
  },
  GPUGROUP_NCCL_SUBGROUPS: {
    type: 'enum',
    values: ['split', 'init'],
    default: 'split',
    doc: "How the TP/PP/DP/EP communicators are made on NCCL: 'split' from the world's (ncclCommSplit) or 'init' (a unique id and an init per group).",
  },
  GPUGROUP_CACHE_MAX_BYTES: {
    type: 'bytes',
    default: 256 << 20,
    doc: 'Bytes of freed device blocks (up to 64 MiB each) a rank keeps for reuse; 0 turns the cache off.',
  },
  GPUGROUP_STAGING_CHUNK_BYTES: {
    type: 'bytes',
    min: 65536,
    default: 4 << 20,
    doc: 'Bytes of one pinned staging chunk for host↔device copies (rounded up to 64 KiB); the largest piece of a copy.',
  },
  GPUGROUP_STAGING_CHUNKS: {
    type: 'int',
    default: 4,
    doc: 'Pinned staging chunks per device and thread; 0 turns staging off (copies go from pageable memory).',
  },
  GPUGROUP_STAGING_MIN_PIECE_BYTES: {
    type: 'bytes',
    min: 65536,
    default: 1 << 20,
    doc: 'Host→device copies up to this size move as one piece, larger ones in pieces of at least this size; device→host copies use half of it.',
  },
  GPUGROUP_COPY_THREADS: {
    type: 'int',
    default: 6,
    doc: 'Threads that copy host memory in large host↔device copies, the caller included (helpers start at the first large copy); 1: the caller alone.',
  },
  GPUGROUP_PP_LAYER_PARTITION: {
    type: 'string',
    default: undefined,
    fallback: 'VLLM_PP_LAYER_PARTITION',
    doc: 'Layers per pipeline stage, comma-separated (e.g. 4,6,6,4), overriding the even split of getPpIndices.',
  },
} as const satisfies Record<`GPUGROUP_${string}`, SettingSpec>;

/** A setting's variable name. */
export type SettingName = keyof typeof SETTINGS;

type ValueOf<S extends SettingSpec> = S['type'] extends 'int' | 'bytes' | 'ms'
  ? number
  : S extends { values: readonly (infer V)[] }
    ? V
    : S['default'] extends undefined
      ? string | undefined
      : string;

/** The parsed value of setting `N`. */
export type SettingValue<N extends SettingName> = ValueOf<(typeof SETTINGS)[N]>;

const INTEGER = /^\s*\d+\s*$/;
const NUMBER = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/;

/** Parses `raw` (the variable's text; unset or empty means the default) as setting `name`. */
export function parseSetting<N extends SettingName>(name: N, raw: string | undefined): SettingValue<N> {
  const spec: SettingSpec = SETTINGS[name];
  if (raw === undefined || raw === '') return spec.default as SettingValue<N>;
  switch (spec.type) {
    case 'int':
    case 'bytes':
    case 'ms': {
      const ok = spec.type === 'ms' ? NUMBER.test(raw) : INTEGER.test(raw);
      const min = spec.min ?? 0;
      const n = Number(raw);
      if (!ok || !Number.isSafeInteger(Math.ceil(n)) || n < min) {
        const what =
          spec.type === 'bytes'
            ? 'a whole number of bytes (digits only, e.g. 4194304)'
            : spec.type === 'int'
              ? 'an integer'
              : 'a number of milliseconds';
        throw new InvalidArgumentError(name, `expected ${what}${min > 0 ? ` >= ${min}` : ''}, got '${raw}'`);
      }
      return n as SettingValue<N>;
    }
    case 'enum': {
      const word = raw.trim().toLowerCase();
      const values = spec.values ?? [];
      if (!values.includes(word)) {
        const listed = values.filter((v) => v !== '').join(', ');
        throw new InvalidArgumentError(name, `expected one of ${listed}, got '${raw}'`);
      }
      return word as SettingValue<N>;
    }
    default:
      return raw as SettingValue<N>;
  }
}

const parsed = new Map<string, { raw: string | undefined; value: unknown }>();

/**
 * The current value of setting `name`: the variable (or its `fallback`) parsed, or
 * the default when unset or empty. Throws InvalidArgumentError naming the variable
 * when its text does not parse.
 */
export function setting<N extends SettingName>(name: N): SettingValue<N> {
  const spec: SettingSpec = SETTINGS[name];
  let raw = process.env[name];
  if ((raw === undefined || raw === '') && spec.fallback !== undefined) raw = process.env[spec.fallback];
  const hit = parsed.get(name);
  if (hit && hit.raw === raw) return hit.value as SettingValue<N>;
  const value = parseSetting(name, raw);
  parsed.set(name, { raw, value });
  return value;
}

const fixed = new Map<string, unknown>();

/**
 * Setting `name` as read at its first use in this thread, for hot paths (an
 * allocation, a poll turn, a log call) where a `process.env` lookup per call would
 * cost more than the work: later changes to the variable are not seen.
 */
export function settingAtFirstUse<N extends SettingName>(name: N): SettingValue<N> {
  if (fixed.has(name)) return fixed.get(name) as SettingValue<N>;
  const value = setting(name);
  fixed.set(name, value);
  return value;
}
