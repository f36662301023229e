/**
 * The NCCL weight transfer engine's info types (weight_transfer/base.py, nccl_engine.py) and their
 * parsing from plain objects. Parsing follows vLLM's split: a missing, unknown or
 * mistyped field is "Invalid init_info / update_info for NcclWeightTransferEngine: …"
 * (vLLM's TypeError from `cls(**dict)`), while a consistency check after construction
 * names the field (`dtypeNames`, `shapes`), like vLLM's `__post_init__`.
 *
 * Keys are camelCase; vLLM's snake_case keys (`master_address`, `dtype_names`, …) are
 * accepted too, since update infos often arrive as JSON written for vLLM.
 */
import { InvalidArgumentError } from '../errors.ts';
import { dtypeInfo, type DType } from '../tensor/index.ts';

/** vLLM's DEFAULT_PACKED_BUFFER_SIZE_BYTES: 1 GiB. */
export const DEFAULT_PACKED_BUFFER_SIZE_BYTES = 1024 ** 3;
/** vLLM's DEFAULT_PACKED_NUM_BUFFERS. */
export const DEFAULT_PACKED_NUM_BUFFERS = 2;

/** Where the trainer's store listens and where this party sits in the transfer group. */
export interface NcclWeightTransferInitInfo {
  /** Host of the store; the trainer (group rank 0) serves it. */
  masterAddress: string;
  masterPort: number;
  /** Added to a worker's rank; the trainer is rank 0, so usually 1. */
  rankOffset: number;
  /** Trainer plus every inference worker. */
  worldSize: number;
}

/** What one weight update carries, as the inference side expects it. */
export interface NcclWeightTransferUpdateInfo {
  names: string[];
  /** torch dtype names, e.g. `float32`, `bfloat16`. */
  dtypeNames: DType[];
  shapes: number[][];
  /** Broadcast packed buffers instead of one broadcast per tensor. */
  packed: boolean;
  /** Target bytes of a packed buffer (a buffer closes after the tensor that crosses it). */
  packedBufferSizeBytes: number;
  /** Buffers in rotation; only affects overlap, not boundaries. */
  packedNumBuffers: number;
  /** vLLM's base field: true when weights still need layer-wise processing. */
  isCheckpointFormat: boolean;
}

/** An update info as callers write it: the optional fields take vLLM's defaults. */
export type NcclWeightTransferUpdateInput = Pick<NcclWeightTransferUpdateInfo, 'names' | 'dtypeNames' | 'shapes'> &
  Partial<NcclWeightTransferUpdateInfo>;

const ENGINE = 'NcclWeightTransferEngine';
const INIT_KEYS = {
  masterAddress: 'master_address',
  masterPort: 'master_port',
  rankOffset: 'rank_offset',
  worldSize: 'world_size',
} as const;
const UPDATE_KEYS = {
  names: 'names',
  dtypeNames: 'dtype_names',
  shapes: 'shapes',
  packed: 'packed',
  packedBufferSizeBytes: 'packed_buffer_size_bytes',
  packedNumBuffers: 'packed_num_buffers',
  isCheckpointFormat: 'is_checkpoint_format',
} as const;

/** Reads `obj` into camelCase fields; unknown keys are refused (as `cls(**dict)` does). */
function readFields(obj: unknown, keys: Record<string, string>, what: string): Record<string, unknown> {
  const fail = (why: string) =>
    new InvalidArgumentError(
      what,
      `Invalid ${what === 'initInfo' ? 'init_info' : 'update_info'} for ${ENGINE}: ${why}`,
    );
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
    throw fail(`expected a plain object, got ${obj === null ? 'null' : Array.isArray(obj) ? 'an array' : typeof obj}`);
  const bySnake = new Map(Object.entries(keys).map(([camel, snake]) => [snake, camel]));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const camel = k in keys ? k : bySnake.get(k);
    if (camel === undefined) throw fail(`unexpected keyword argument '${k}'`);
    if (camel in out) throw fail(`'${camel}' is given twice (as '${camel}' and '${keys[camel]}')`);
    if (v !== undefined) out[camel] = v;
  }
  return out;
}

function integer(what: string, field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const kind = what === 'initInfo' ? 'init_info' : 'update_info';
    throw new InvalidArgumentError(
      what,
      `Invalid ${kind} for ${ENGINE}: '${field}' must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * vLLM's `parse_init_info`: a plain object (camelCase or snake_case keys) to a checked
 * {@link NcclWeightTransferInitInfo}. Throws InvalidArgumentError('initInfo', "Invalid
 * init_info for NcclWeightTransferEngine: …") for a missing, unknown or bad field.
 */
export function parseNcclInitInfo(obj: unknown): NcclWeightTransferInitInfo {
  const f = readFields(obj, INIT_KEYS, 'initInfo');
  for (const k of Object.keys(INIT_KEYS)) {
    if (!(k in f))
      throw new InvalidArgumentError('initInfo', `Invalid init_info for ${ENGINE}: missing required argument '${k}'`);
  }
  if (typeof f.masterAddress !== 'string' || f.masterAddress === '') {
    throw new InvalidArgumentError(
      'initInfo',
      `Invalid init_info for ${ENGINE}: 'masterAddress' must be a non-empty string, got ${JSON.stringify(f.masterAddress)}`,
    );
  }
  return {
    masterAddress: f.masterAddress,
    masterPort: integer('initInfo', 'masterPort', f.masterPort, 1, 65_535),
    rankOffset: integer('initInfo', 'rankOffset', f.rankOffset, 0),
    worldSize: integer('initInfo', 'worldSize', f.worldSize, 1),
  };
}

/**
 * vLLM's `parse_update_info` plus `__post_init__`: fills the defaults (unpacked, 1 GiB,
 * 2 buffers), checks each field, then checks that `dtypeNames` and `shapes` have as
 * many entries as `names` (InvalidArgumentError naming the field, vLLM's message).
 */
export function parseNcclUpdateInfo(obj: unknown): NcclWeightTransferUpdateInfo {
  const f = readFields(obj, UPDATE_KEYS, 'updateInfo');
  const bad = (why: string) => new InvalidArgumentError('updateInfo', `Invalid update_info for ${ENGINE}: ${why}`);
  for (const k of ['names', 'dtypeNames', 'shapes']) {
    if (!(k in f)) throw bad(`missing required argument '${k}'`);
    if (!Array.isArray(f[k])) throw bad(`'${k}' must be an array, got ${typeof f[k]}`);
  }
  const names = f.names as unknown[];
  names.forEach((n, i) => {
    if (typeof n !== 'string') throw bad(`names[${i}] must be a string, got ${JSON.stringify(n)}`);
  });
  const dtypeNames = (f.dtypeNames as unknown[]).map((d, i) => {
    if (typeof d !== 'string') throw bad(`dtypeNames[${i}] must be a string, got ${JSON.stringify(d)}`);
    return dtypeInfo(d, `dtypeNames[${i}]`).name;
  });
  const shapes = (f.shapes as unknown[]).map((s, i) => {
    if (!Array.isArray(s) || !s.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`shapes[${i}] must be an array of non-negative integers, got ${JSON.stringify(s)}`);
    }
    return [...(s as number[])];
  });
  const packed = f.packed ?? false;
  if (typeof packed !== 'boolean') throw bad(`'packed' must be a boolean, got ${JSON.stringify(packed)}`);
  const isCheckpointFormat = f.isCheckpointFormat ?? true;
  if (typeof isCheckpointFormat !== 'boolean')
    throw bad(`'isCheckpointFormat' must be a boolean, got ${JSON.stringify(isCheckpointFormat)}`);
  const info: NcclWeightTransferUpdateInfo = {
    names: names as string[],
    dtypeNames,
    shapes,
    packed,
    packedBufferSizeBytes: integer(
      'updateInfo',
      'packedBufferSizeBytes',
      f.packedBufferSizeBytes ?? DEFAULT_PACKED_BUFFER_SIZE_BYTES,
      1,
    ),
    packedNumBuffers: integer('updateInfo', 'packedNumBuffers', f.packedNumBuffers ?? DEFAULT_PACKED_NUM_BUFFERS, 1),
    isCheckpointFormat,
  };
  checkListLengths(info);
  return info;
}

/** vLLM's `__post_init__` check; empty lists are valid. */
function checkListLengths(info: Pick<NcclWeightTransferUpdateInfo, 'names' | 'dtypeNames' | 'shapes'>): void {
  const n = info.names.length;
  if (info.dtypeNames.length !== n) {
    throw new InvalidArgumentError(
      'dtypeNames',
      `\`dtypeNames\` should be of the same size as \`names\`: got ${info.dtypeNames.length} and ${n}`,
    );
  }
  if (info.shapes.length !== n) {
    throw new InvalidArgumentError(
      'shapes',
      `\`shapes\` should be of the same size as \`names\`: got ${info.shapes.length} and ${n}`,
    );
  }
}
