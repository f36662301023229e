/**
 * Compiling CUDA C with NVRTC for a device, loading it as a module and launching its
 * kernels on a stream. Generated kernels are compiled once per device and name and kept
 * for the life of the thread; user kernels own their modules (src/compute/kernel.ts).
 *
 * Compiling and loading are not stream work: they run with the thread's capture mode
 * relaxed (CUDA docs, cudaThreadExchangeStreamCaptureMode), so a first use inside
 * graphCapture works and adds nothing to the graph. Launches are ordinary stream work and are captured.
 */
import { CaptureMode, DeviceAttr, NvrtcResult, ParamBlock, cuda, cudaModuleApi, nvrtc } from '../../native/index.ts';
import { InvalidArgumentError, KernelCompileError } from '../errors.ts';
import { currentStream } from '../tensor/index.ts';

/** One kernel argument with its C type. Pointers and 64-bit integers may be bigint. */
export type ParamValue =
  | { ptr: bigint }
  | { i32: number }
  | { u32: number }
  | { i64: number | bigint }
  | { u64: number | bigint }
  | { f32: number }
  | { f64: number };

/** A grid or block size: x, or [x, y?, z?]. */
export type Dim3 = number | readonly number[];

/**
 * Runs `fn` with this thread's capture mode relaxed, so that it may load and allocate
 * while any stream of this thread is being captured (relaxing it when nothing is being
 * captured changes nothing).
 */
export function outsideCapture<T>(fn: () => T): T {
  const rt = cuda();
  const mode = new Int32Array([CaptureMode.Relaxed]);
  rt.cudaThreadExchangeStreamCaptureMode(mode);
  try {
    return fn();
  } finally {
    rt.cudaThreadExchangeStreamCaptureMode(mode);
  }
}

const archs = new Map<number, { major: number; minor: number; sms: number }>();

/** Compute capability and multiprocessor count of device `ordinal`. */
export function deviceProps(ordinal: number): { major: number; minor: number; sms: number } {
  let props = archs.get(ordinal);
  if (!props) {
    const drv = cudaModuleApi();
    const out = new Int32Array(1);
    drv.cuDeviceGetAttribute(out, DeviceAttr.computeCapabilityMajor, ordinal);
    const major = out[0];
    drv.cuDeviceGetAttribute(out, DeviceAttr.computeCapabilityMinor, ordinal);
    const minor = out[0];
    drv.cuDeviceGetAttribute(out, DeviceAttr.multiprocessorCount, ordinal);
    props = { major, minor, sms: out[0] };
    archs.set(ordinal, props);
  }
  return props;
}

function programLog(lib: ReturnType<typeof nvrtc>, prog: bigint): string {
  const size = new BigUint64Array(1);
  lib.nvrtcGetProgramLogSize(prog, size);
  const buf = new Uint8Array(Number(size[0]));
  if (buf.length > 0) lib.nvrtcGetProgramLog(prog, buf);
  return Buffer.from(buf).toString('utf8').replace(/\0+$/, '');
}

/**
 * Compiles `source` for device `ordinal` (its compute capability as NVRTC's
 * `--gpu-architecture=sm_XY`) to a CUBIN; where this NVRTC cannot emit one, to PTX for
 * the driver to finish. A refused source throws {@link KernelCompileError} with the log.
 */
export function compileSource(
  source: string,
  name: string,
  ordinal: number,
  options: readonly string[] = [],
): Uint8Array {
  const lib = nvrtc();
  const { major, minor } = deviceProps(ordinal);
  const all = [`--gpu-architecture=sm_${major}${minor}`, ...options];
  const handle = new BigUint64Array(1);
  lib.nvrtcCreateProgram(handle, source, `${name}.cu`, 0, null, null);
  const prog = handle[0];
  try {
    const result = lib.nvrtcCompileProgram(prog, all.length, all);
    if (result === NvrtcResult.compilation) throw new KernelCompileError(name, programLog(lib, prog), all);
    const size = new BigUint64Array(1);
    if (lib.nvrtcGetCUBINSize && lib.nvrtcGetCUBIN) {
      lib.nvrtcGetCUBINSize(prog, size);
      if (size[0] > 0n) {
        const cubin = new Uint8Array(Number(size[0]));
        lib.nvrtcGetCUBIN(prog, cubin);
        return cubin;
      }
    }
    lib.nvrtcGetPTXSize(prog, size);
    const ptx = new Uint8Array(Number(size[0]));
    lib.nvrtcGetPTX(prog, ptx); // NUL-terminated, as cuModuleLoadData wants PTX
    return ptx;
  } finally {
    lib.nvrtcDestroyProgram(handle);
  }
}

/** A loaded module and one of its functions. */
export interface LoadedKernel {
  module: bigint;
  fn: bigint;
}

/** Loads `image` into the current context and finds `name` in it. */
export function loadKernel(image: Uint8Array, name: string): LoadedKernel {
  const drv = cudaModuleApi();
  const out = new BigUint64Array(1);
  drv.cuModuleLoadData(out, image);
  const module = out[0];
  try {
    drv.cuModuleGetFunction(out, module, name);
  } catch (err) {
    drv.cuModuleUnload(module);
    throw err;
  }
  return { module, fn: out[0] };
}

const generated = new Map<string, bigint>();

/**
 * The function `name` of generated source on device `ordinal`, compiled and loaded on
 * first use (`source` is called only then).
 */
export function generatedKernel(ordinal: number, name: string, source: () => string): bigint {
  const key = `${ordinal}/${name}`;
  let fn = generated.get(key);
  if (fn === undefined) {
    fn = outsideCapture(() => loadKernel(compileSource(source(), name, ordinal), name).fn);
    generated.set(key, fn);
  }
  return fn;
}

/** Number of generated kernels compiled in this thread (tests check the cache with it). */
export function generatedKernelCount(): number {
  return generated.size;
}

let block: ParamBlock | undefined;
const MAX_PARAMS = 64;

function dim3(d: Dim3, argument: string): [number, number, number] {
  const v = typeof d === 'number' ? [d] : [...d];
  if (v.length < 1 || v.length > 3 || v.some((x) => !Number.isInteger(x) || x < 1))
    throw new InvalidArgumentError(argument, `expected 1 to 3 positive integers, got ${JSON.stringify(d)}`);
  return [v[0], v[1] ?? 1, v[2] ?? 1];
}

/** Writes each argument into its 8-byte slot, checking its declared type. */
function writeParams(params: readonly ParamValue[], values: DataView): void {
  params.forEach((p, i) => {
    const at = i * 8;
    if ('ptr' in p) values.setBigUint64(at, p.ptr, true);
    else if ('i32' in p) values.setInt32(at, p.i32, true);
    else if ('u32' in p) values.setUint32(at, p.u32, true);
    else if ('i64' in p) values.setBigInt64(at, BigInt(p.i64), true);
    else if ('u64' in p) values.setBigUint64(at, BigInt(p.u64), true);
    else if ('f32' in p) values.setFloat32(at, p.f32, true);
    else if ('f64' in p) values.setFloat64(at, p.f64, true);
    else throw new InvalidArgumentError(`args[${i}]`, `unknown argument form ${JSON.stringify(p)}`);
  });
}

/** Enqueues `fn` on `stream` (default: the current stream) with `params`. */
export function launch(
  fn: bigint,
  grid: Dim3,
  blockDim: Dim3,
  sharedMemBytes: number,
  params: readonly ParamValue[],
  stream: bigint = currentStream().handle,
): void {
  const g = dim3(grid, 'grid');
  const b = dim3(blockDim, 'block');
  if (!Number.isInteger(sharedMemBytes) || sharedMemBytes < 0)
    throw new InvalidArgumentError('sharedMemBytes', `expected a non-negative integer, got ${sharedMemBytes}`);
  if (params.length > MAX_PARAMS)
    throw new InvalidArgumentError('args', `at most ${MAX_PARAMS} kernel arguments, got ${params.length}`);
  block ??= new ParamBlock(MAX_PARAMS);
  writeParams(params, block.values);
  cudaModuleApi().cuLaunchKernel(fn, g[0], g[1], g[2], b[0], b[1], b[2], sharedMemBytes, stream, block.params, null);
}

/** Threads per block of the generated kernels. */
export const BLOCK = 256;

/** Blocks for `work` items at one item per thread: enough for two waves, the rest grid-strided. */
export function gridFor(ordinal: number, work: number): number {
  return Math.max(1, Math.min(Math.ceil(work / BLOCK), deviceProps(ordinal).sms * 32));
}
