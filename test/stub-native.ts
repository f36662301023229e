// The stand-in CUDA library (bench/stub-native: device memory is host memory, copies
// are memmove) for tests of device code paths on machines without a GPU. Call
// useStubNative() before anything loads libcudart; the process then uses the stub.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';

/** Builds the stub (needs a C compiler) and points gpugroup at it; false when no compiler. */
export function useStubNative(): boolean {
  const out = mkdtempSync(join(tmpdir(), 'gpugroup-stub-'));
  let vars: string;
  try {
    vars = execFileSync('bash', [new URL('../bench/stub-native/build.sh', import.meta.url).pathname], {
      env: { ...process.env, STUB_OUT: out },
      encoding: 'utf8',
    });
  } catch {
    return false;
  }
  for (const m of vars.matchAll(/^export (\w+)=(.*)$/gm)) process.env[m[1]] = m[2];
  process.env.GPUGROUP_STUB_GPUS = '1';
  return true;
}

let hooksLib: ReturnType<typeof koffi.load> | null = null;

/**
 * The stub's test hooks, after useStubNative(): `setBusy(true)` makes every stream and
 * event report work still pending; `setAsyncError(r)` is what ncclCommGetAsyncError
 * reports from then on (0: none).
 */
export function stubHooks(): { setBusy(busy: boolean): void; setAsyncError(result: number): void } {
  // Kept for the life of the process: koffi would unload the library with its handle.
  hooksLib ??= koffi.load(process.env.GPUGROUP_CUDART_SO_PATH ?? '');
  const busy = hooksLib.func('void gpugroupStubSetBusy(int busy)');
  const asyncError = hooksLib.func('void gpugroupStubSetAsyncError(int result)');
  return { setBusy: (b) => busy(b ? 1 : 0), setAsyncError: (r) => asyncError(r) };
}
