// The stand-in CUDA library (bench/stub-native: device memory is host memory, copies
// are memmove) for tests of device code paths on machines without a GPU. Call
// useStubNative() before anything loads libcudart; the process then uses the stub.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';

/**
 * Builds the stub (needs a C compiler) and returns the variables that make gpugroup load
 * it, for a child process's environment; null when it cannot be built.
 */
export function stubNativeEnv(gpus = 1): Record<string, string> | null {
  const out = mkdtempSync(join(tmpdir(), 'gpugroup-stub-'));
  let vars: string;
  try {
    vars = execFileSync('bash', [new URL('../bench/stub-native/build.sh', import.meta.url).pathname], {
      env: { ...process.env, STUB_OUT: out },
      encoding: 'utf8',
    });
  } catch {
    return null;
  }
  const env: Record<string, string> = { GPUGROUP_STUB_GPUS: String(gpus) };
  for (const m of vars.matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]] = m[2];
  return env;
}

/** Builds the stub and points this process at it; false when no compiler. */
export function useStubNative(): boolean {
  const env = stubNativeEnv();
  if (!env) return false;
  Object.assign(process.env, env);
  return true;
}

let hooksLib: ReturnType<typeof koffi.load> | null = null;

/**
 * The stub's test hooks, after useStubNative(): `setBusy(true)` makes every stream and
 * event report work still pending; `setEventLag(k)` makes the next k event queries after
 * each record report it (work that ends a moment later; 0: none); `setAsyncError(r)` is
 * what ncclCommGetAsyncError reports from then on (0: none).
 */
export function stubHooks(): {
  setBusy(busy: boolean): void;
  setEventLag(queries: number): void;
  setAsyncError(result: number): void;
} {
  // Kept for the life of the process: koffi would unload the library with its handle.
  hooksLib ??= koffi.load(process.env.GPUGROUP_CUDART_SO_PATH ?? '');
  const busy = hooksLib.func('void gpugroupStubSetBusy(int busy)');
  const lag = hooksLib.func('void gpugroupStubSetEventLag(int queries)');
  const asyncError = hooksLib.func('void gpugroupStubSetAsyncError(int result)');
  return { setBusy: (b) => busy(b ? 1 : 0), setEventLag: (k) => lag(k), setAsyncError: (r) => asyncError(r) };
}
