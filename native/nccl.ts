/**
 * libnccl through koffi (vLLM's pynccl_wrapper.py): every function vLLM binds, plus the ones
 * a non-blocking, abortable communicator needs. `ncclUniqueId` is a 128-byte struct
 * passed BY VALUE, declared with uint8_t members so koffi hands back bytes, not a
 * string. Device calls are synchronous on the rank's own thread.
 */
import { NcclError } from './errors.ts';
import { bindTable, type ProtoRow } from './bind.ts';
import { loadLibrary, namedStruct, type LibrarySpec } from './load.ts';

/** ncclResult_t values (nccl.h). */
export const NcclResult = {
  ncclSuccess: 0,
  ncclUnhandledCudaError: 1,
  ncclSystemError: 2,
  ncclInternalError: 3,
  ncclInvalidArgument: 4,
  ncclInvalidUsage: 5,
  ncclRemoteError: 6,
  ncclInProgress: 7,
  ncclTimeout: 8,
} as const;

/** ncclDataType_t values (nccl.h). */
export const NcclDataType = {
  ncclInt8: 0,
  ncclUint8: 1,
  ncclInt32: 2,
  ncclUint32: 3,
  ncclInt64: 4,
  ncclUint64: 5,
  ncclFloat16: 6,
  ncclFloat32: 7,
  ncclFloat64: 8,
  ncclBfloat16: 9,
  ncclFloat8e4m3: 10,
  ncclFloat8e5m2: 11,
} as const;

/** ncclRedOp_t values. */
export const NcclRedOp = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 } as const;
export type ReduceOp = keyof typeof NcclRedOp;

/** Size of an ncclUniqueId in bytes. */
export const NCCL_UNIQUE_ID_BYTES = 128;

const resultNames = Object.fromEntries(Object.entries(NcclResult).map(([k, v]) => [v, k])) as Record<number, string>;

/** Symbolic name of an ncclResult_t, e.g. `ncclInvalidArgument`. */
export function ncclResultName(code: number): string {
  return resultNames[code] ?? `ncclResult(${code})`;
}

const spec: LibrarySpec = {
  name: 'libnccl',
  envVar: 'GPUGROUP_NCCL_SO_PATH',
  sonames: ['libnccl.so.2'],
  pythonRelative: ['nvidia/nccl/lib/libnccl.so.2'],
};

// ncclInProgress is returned, not thrown: a non-blocking communicator (blocking = 0)
// answers it from init, group end and collectives until its work is enqueued.
const inProgress = [NcclResult.ncclInProgress];
const table: readonly ProtoRow[] = [
  { proto: 'const char *ncclGetErrorString(int result)', returns: 'value' },
  { proto: 'const char *ncclGetLastError(void *comm)', returns: 'value', optional: true },
  { proto: 'int ncclGetVersion(int *version)' },
  { proto: 'int ncclGetUniqueId(_Out_ ncclUniqueId *uniqueId)' },
  { proto: 'int ncclCommInitRank(void *commOut, int nranks, ncclUniqueId commId, int rank)' },
  {
    proto: 'int ncclCommInitRankConfig(void *commOut, int nranks, ncclUniqueId commId, int rank, void *config)',
    okCodes: inProgress,
  },
  { proto: 'int ncclCommSplit(void *comm, int color, int key, void *newCommOut, void *config)', okCodes: inProgress },
  { proto: 'int ncclCommFinalize(void *comm)', okCodes: inProgress },
  { proto: 'int ncclCommDestroy(void *comm)' },
  { proto: 'int ncclCommAbort(void *comm)' },
  { proto: 'int ncclCommGetAsyncError(void *comm, int *asyncError)' },
  { proto: 'int ncclCommCount(void *comm, int *count)' },
  { proto: 'int ncclCommCuDevice(void *comm, int *device)' },
  { proto: 'int ncclCommUserRank(void *comm, int *rank)' },
  {
    proto:
      'int ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto:
      'int ncclReduce(const void *sendbuff, void *recvbuff, size_t count, int datatype, int op, int root, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto:
      'int ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, int datatype, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto:
      'int ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, int datatype, int op, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto:
      'int ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, int datatype, int root, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto: 'int ncclSend(const void *sendbuff, size_t count, int datatype, int peer, void *comm, void *stream)',
    okCodes: inProgress,
  },
  {
    proto: 'int ncclRecv(void *recvbuff, size_t count, int datatype, int peer, void *comm, void *stream)',
    okCodes: inProgress,
  },
  { proto: 'int ncclGroupStart()' },
  { proto: 'int ncclGroupEnd()', okCodes: inProgress },
  {
    proto: 'int ncclCommWindowRegister(void *comm, void *buff, size_t size, void *winOut, int winFlags)',
    optional: true,
  },
  { proto: 'int ncclCommWindowDeregister(void *comm, void *win)', optional: true },
];

type Ptr = bigint | null;
type Out64 = BigUint64Array;
type Out32 = Int32Array;
/** An ncclUniqueId as koffi passes it by value. */
export interface UniqueId {
  internal: Uint8Array;
}

/**
 * The bound NCCL library. Status functions return 0 or ncclInProgress (7) where the
 * table allows it, and throw {@link NcclError} otherwise.
 */
export interface NcclLibrary {
  path: string;
  /**
   * The typed error for an ncclResult_t `result` that `call` produced, the one a failed
   * call throws; for results read back rather than returned (ncclCommGetAsyncError).
   */
  errorFor(result: number, call: string): NcclError;
  /** Raw NCCL_VERSION_CODE, e.g. 22803. */
  versionCode: number;
  /** Formatted version, e.g. `2.28.3`. */
  version: string;
  ncclGetErrorString(result: number): string;
  ncclGetLastError?(comm: Ptr): string | null;
  ncclGetVersion(out: Out32): number;
  ncclGetUniqueId(out: Partial<UniqueId>): number;
  ncclCommInitRank(out: Out64, nranks: number, id: UniqueId, rank: number): number;
  ncclCommInitRankConfig(out: Out64, nranks: number, id: UniqueId, rank: number, config: Uint8Array): number;
  ncclCommSplit(comm: Ptr, color: number, key: number, out: Out64, config: Uint8Array | null): number;
  ncclCommFinalize(comm: Ptr): number;
  ncclCommDestroy(comm: Ptr): number;
  ncclCommAbort(comm: Ptr): number;
  ncclCommGetAsyncError(comm: Ptr, out: Out32): number;
  ncclCommCount(comm: Ptr, out: Out32): number;
  ncclCommCuDevice(comm: Ptr, out: Out32): number;
  ncclCommUserRank(comm: Ptr, out: Out32): number;
  ncclAllReduce(send: Ptr, recv: Ptr, count: number, dtype: number, op: number, comm: Ptr, stream: Ptr): number;
  ncclReduce(
    send: Ptr,
    recv: Ptr,
    count: number,
    dtype: number,
    op: number,
    root: number,
    comm: Ptr,
    stream: Ptr,
  ): number;
  ncclAllGather(send: Ptr, recv: Ptr, sendcount: number, dtype: number, comm: Ptr, stream: Ptr): number;
  ncclReduceScatter(send: Ptr, recv: Ptr, recvcount: number, dtype: number, op: number, comm: Ptr, stream: Ptr): number;
  ncclBroadcast(send: Ptr, recv: Ptr, count: number, dtype: number, root: number, comm: Ptr, stream: Ptr): number;
  ncclSend(send: Ptr, count: number, dtype: number, peer: number, comm: Ptr, stream: Ptr): number;
  ncclRecv(recv: Ptr, count: number, dtype: number, peer: number, comm: Ptr, stream: Ptr): number;
  ncclGroupStart(): number;
  ncclGroupEnd(): number;
  /** Absent before NCCL 2.27 (window registration is optional). */
  ncclCommWindowRegister?(comm: Ptr, buff: Ptr, size: number, winOut: Out64, flags: number): number;
  ncclCommWindowDeregister?(comm: Ptr, win: Ptr): number;
}

/**
 * Formats an NCCL_VERSION_CODE: `22803` → `2.28.3`, `22800` → `2.28.0`, and the
 * pre-2.9 encoding `2708` → `2.7.8`. vLLM drops a zero patch (`"2.27."`,
 * pynccl_wrapper.py: ncclGetVersion); we do not.
 */
export function formatNcclVersion(code: number): string {
  if (!Number.isInteger(code) || code <= 0) throw new RangeError(`not an NCCL version code: ${code}`);
  const major = code >= 10000 ? Math.floor(code / 10000) : Math.floor(code / 1000);
  const rest = code >= 10000 ? code % 10000 : code % 1000;
  return `${major}.${Math.floor(rest / 100)}.${rest % 100}`;
}

/** Checks and wraps 128 raw bytes as an ncclUniqueId (pynccl_wrapper.py: unique_id_from_bytes). */
export function uniqueIdFromBytes(bytes: Uint8Array): UniqueId {
  if (!(bytes instanceof Uint8Array) || bytes.length !== NCCL_UNIQUE_ID_BYTES) {
    const got = bytes instanceof Uint8Array ? bytes.length : typeof bytes;
    throw new RangeError(`Expected ${NCCL_UNIQUE_ID_BYTES} bytes for ncclUniqueId, got ${got} bytes`);
  }
  return { internal: bytes };
}

/** Options of {@link ncclConfig}; unset fields keep NCCL's defaults. */
export interface NcclConfigOptions {
  /** 0 makes init and collectives non-blocking (they may return ncclInProgress). */
  blocking?: 0 | 1;
  cgaClusterSize?: number;
  minCTAs?: number;
  maxCTAs?: number;
  splitShare?: 0 | 1;
}

const NCCL_CONFIG_UNDEF_INT = -2147483648;
const NCCL_API_MAGIC = 0xcafebeef;
// ncclConfig_t as nccl.h 2.28 lays it out (ncclConfig_v22800), x86-64:
// size_t size @0, u32 magic @8, u32 version @12, int blocking @16, cgaClusterSize @20,
// minCTAs @24, maxCTAs @28, const char *netName @32, splitShare @40, trafficClass @44,
// const char *commName @48, collnetEnable @56, CTAPolicy @60, shrinkShare @64,
// nvlsCTAs @68, nChannelsPerNetPeer @72, nvlinkCentricSched @76; sizeof 80.
// `version` says which layout we pass; newer libraries read only the fields it has.
const CONFIG_BYTES = 80;
const CONFIG_VERSION = 22800;
const intFields: Record<string, number> = {
  blocking: 16,
  cgaClusterSize: 20,
  minCTAs: 24,
  maxCTAs: 28,
  splitShare: 40,
  trafficClass: 44,
  collnetEnable: 56,
  CTAPolicy: 60,
  shrinkShare: 64,
  nvlsCTAs: 68,
  nChannelsPerNetPeer: 72,
  nvlinkCentricSched: 76,
};

/**
 * Builds an ncclConfig_t equal to NCCL_CONFIG_INITIALIZER with `options` applied.
 * Pass the returned bytes as the `config` argument; NCCL copies it during the call.
 */
export function ncclConfig(options: NcclConfigOptions = {}): Uint8Array {
  const bytes = new Uint8Array(CONFIG_BYTES);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(CONFIG_BYTES), true);
  view.setUint32(8, NCCL_API_MAGIC, true);
  view.setUint32(12, CONFIG_VERSION, true);
  for (const offset of Object.values(intFields)) view.setInt32(offset, NCCL_CONFIG_UNDEF_INT, true);
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    view.setInt32(intFields[key], value, true);
  }
  return bytes;
}

let library: NcclLibrary | undefined;

/**
 * The NCCL library of this thread, loaded on first use. Throws
 * {@link LibraryNotFoundError} (listing every path tried) when it cannot be found.
 */
export function nccl(): NcclLibrary {
  if (library) return library;
  const { lib, path } = loadLibrary(spec);
  namedStruct('ncclUniqueId', { internal: 'uint8_t [128]' });
  let bound: Record<string, (...args: never[]) => unknown> = {};
  const makeError = (code: number, call: string): NcclError =>
    new NcclError(code, ncclResultName(code), call, bound.ncclGetErrorString(code as never) as string);
  bound = bindTable(lib, table, makeError);
  const out = new Int32Array(1);
  (bound.ncclGetVersion as (o: Int32Array) => number)(out);
  library = Object.assign(bound, {
    path,
    errorFor: makeError,
    versionCode: out[0],
    version: formatNcclVersion(out[0]),
  }) as unknown as NcclLibrary;
  return library;
}

/** True when libnccl can be loaded in this process. Never throws. */
export function ncclAvailable(): boolean {
  try {
    nccl();
    return true;
  } catch {
    return false;
  }
}
