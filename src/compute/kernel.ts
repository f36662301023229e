/**
 * User kernels: CUDA C source compiled with NVRTC and launched on the current stream
 * (capturable in graphCapture like any stream work).
 *
 *   const saxpy = compileKernel(src, 'saxpy', { device: 'cuda:0' });
 *   saxpy.launch({ grid: blocks, block: 256 }, [y, x, { f32: 2 }, { i32: n }]);
 *
 * The kernel must be `extern "C"` (NVRTC mangles C++ names). Arguments: a Tensor
 * passes its device pointer; a number needs its C type declared ({ i32 }, { u32 },
 * { i64 }, { u64 }, { f32 }, { f64 }), and { ptr } passes a raw device pointer. A
 * source NVRTC refuses throws KernelCompileError carrying NVRTC's log.
 */
import { FuncAttr, cuda, cudaModuleApi } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { Tensor, parseDevice, type Stream } from '../tensor/index.ts';
import {
  type Dim3,
  type LoadedKernel,
  type ParamValue,
  compileSource,
  launch,
  loadKernel,
  outsideCapture,
} from './device.ts';

/** One argument of a launch. */
export type KernelArg = Tensor | ParamValue;

/** Grid, block, dynamic shared memory and stream of one launch. */
export interface LaunchConfig {
  grid: Dim3;
  block: Dim3;
  /** Dynamic shared memory in bytes (default 0). */
  sharedMemBytes?: number;
  /** Default: the current stream. */
  stream?: Stream;
}

/** Options of {@link compileKernel}. */
export interface CompileOptions {
  /** NVRTC options added after the target architecture, e.g. ['--use_fast_math', '-DTILE=32']. */
  options?: string[];
  /**
   * Compile now for this device (`cuda:N`), so that errors surface here; otherwise the
   * kernel compiles for each device on its first launch there.
   */
  device?: string;
  /**
   * The same computation on host tensors: a launch whose tensors are all on the CPU
   * calls it instead (how a program written for GPUs also runs on the CPU backend).
   */
  host?: (config: LaunchConfig, args: readonly KernelArg[]) => void;
}

/** A compiled user kernel; {@link dispose} unloads its modules. */
export class Kernel {
  private readonly loaded = new Map<number, LoadedKernel>();
  private disposed = false;

  /** @internal use {@link compileKernel}. */
  constructor(
    readonly source: string,
    readonly name: string,
    private readonly opts: CompileOptions,
  ) {}

  /** The loaded function on device `ordinal`, compiling it the first time. */
  private functionOn(ordinal: number): bigint {
    if (this.disposed) throw new InvalidArgumentError('kernel', `kernel '${this.name}' was disposed`);
    let k = this.loaded.get(ordinal);
    if (!k) {
      k = outsideCapture(() =>
        loadKernel(compileSource(this.source, this.name, ordinal, this.opts.options ?? []), this.name),
      );
      this.loaded.set(ordinal, k);
    }
    return k.fn;
  }

  /** @internal compiles for `device` now. */
  prepare(device: string): void {
    const ordinal = parseDevice(device);
    if (ordinal !== null) this.functionOn(ordinal);
  }

  /** Enqueues one launch on `config.stream` (default: the current stream). */
  launch(config: LaunchConfig, args: readonly KernelArg[]): void {
    if (!config || typeof config !== 'object') throw new InvalidArgumentError('config', 'expected { grid, block }');
    if (!Array.isArray(args)) throw new InvalidArgumentError('args', 'expected an array of arguments');
    const tensors = args.filter((a): a is Tensor => a instanceof Tensor);
    const devices = new Set(tensors.map((t) => t.device));
    if (devices.size > 1)
      throw new InvalidArgumentError('args', `tensors on several devices: ${[...devices].join(', ')}`);
    const device = config.stream ? `cuda:${config.stream.device}` : [...devices][0];
    if (device === undefined || device === 'cpu') {
      if (!this.opts.host)
        throw new InvalidArgumentError(
          'args',
          `kernel '${this.name}' got host tensors (or none) and has no host implementation; pass device tensors or a host option`,
        );
      this.opts.host(config, args);
      return;
    }
    const params: ParamValue[] = args.map((a, i) => {
      if (a instanceof Tensor) return { ptr: a.dataPtr };
      if (a === null || typeof a !== 'object')
        throw new InvalidArgumentError(
          `args[${i}]`,
          `${String(a)} has no declared type: pass { i32: v }, { u32: v }, { i64: v }, { u64: v }, { f32: v }, { f64: v } or { ptr: p }`,
        );
      return a;
    });
    const ordinal = parseDevice(device) as number;
    const fn = this.functionOn(ordinal);
    const shared = config.sharedMemBytes ?? 0;
    if (shared > 48 * 1024) cudaModuleApi().cuFuncSetAttribute(fn, FuncAttr.maxDynamicSharedSizeBytes, shared);
    launch(fn, config.grid, config.block, shared, params, config.stream?.handle);
  }

  /** Waits for the device's work, then unloads the kernel's modules; idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // A module must outlive the launches of its kernels: let them finish first.
    if (this.loaded.size > 0) cuda().cudaDeviceSynchronize();
    for (const k of this.loaded.values()) cudaModuleApi().cuModuleUnload(k.module);
    this.loaded.clear();
  }
}

/**
 * Compiles `source`'s `extern "C"` kernel `name` with NVRTC for the device's
 * architecture (see {@link CompileOptions}); throws KernelCompileError with NVRTC's log
 * when the source does not compile.
 */
export function compileKernel(source: string, name: string, opts: CompileOptions = {}): Kernel {
  if (typeof source !== 'string' || source.length === 0)
    throw new InvalidArgumentError('source', 'expected CUDA C source text');
  if (typeof name !== 'string' || !/^[A-Za-z_]\w*$/.test(name))
    throw new InvalidArgumentError('name', `expected a C identifier, got ${JSON.stringify(name)}`);
  const k = new Kernel(source, name, opts);
  if (opts.device) k.prepare(opts.device);
  return k;
}
