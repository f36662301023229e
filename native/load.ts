/**
 * Library discovery and loading (vLLM's find_nccl_library, with the order this project fixes):
 * an explicit path from the environment, the dynamic loader's names, CUDA_HOME and
 * /usr/local/cuda, then the NVIDIA wheels of the `python3` on PATH.
 *
 * Loaded libraries are pinned with dlopen(RTLD_NODELETE) and their koffi handles kept
 * at module scope: koffi 3 dlclose()s a library when a worker thread that loaded it
 * exits, and libnccl/libcudart run threads of their own, so an unload segfaults the
 * process.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { LibraryNotFoundError } from './errors.ts';
import { libc } from './libc.ts';

const RTLD_NOW = 0x2;
const RTLD_NODELETE = 0x1000;

/** Handles that must outlive every caller in this thread. */
const pinned = new Map<string, LibraryHandle>();

/** What a successful load returns: the handle and the path that worked. */
export interface LoadedLibrary {
  lib: LibraryHandle;
  path: string;
}

/** One library's search recipe. */
export interface LibrarySpec {
  /** Human name, e.g. `libnccl`. */
  name: string;
  /** Environment variable that forces a path. */
  envVar: string;
  /** Names the dynamic loader resolves by itself (ld.so.cache, LD_LIBRARY_PATH). */
  sonames: string[];
  /**
   * Paths relative to a Python site-packages folder; `*` in a segment matches any text
   * (the CUDA 12 wheels put each library in `nvidia/<name>/lib`, the CUDA 13 ones in
   * `nvidia/cu13/lib`).
   */
  pythonRelative: string[];
}

/** `rel` under `root`, each segment holding `*` matched against the entries present (sorted). */
export function expand(root: string, rel: string): string[] {
  const parts = rel.split('/');
  const star = parts.findIndex((p) => p.includes('*'));
  if (star < 0) return [join(root, rel)];
  const base = join(root, ...parts.slice(0, star));
  const pattern = new RegExp(
    `^${parts[star]
      .split('*')
      .map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  let entries: string[];
  try {
    entries = readdirSync(base)
      .filter((e) => pattern.test(e))
      .sort();
  } catch {
    return [];
  }
  const rest = parts.slice(star + 1).join('/');
  return entries.flatMap((e) => (rest ? expand(join(base, e), rest) : [join(base, e)]));
}

let pythonSiteDirs: string[] | undefined;

/** site-packages folders of the `python3` on PATH; empty when there is none. Cached. */
function pythonSitePackages(): string[] {
  if (pythonSiteDirs) return pythonSiteDirs;
  const script =
    "import site, sysconfig; print('\\n'.join(site.getsitepackages() + [sysconfig.get_paths()['purelib']]))";
  try {
    const out = execFileSync('python3', ['-c', script], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    pythonSiteDirs = [
      ...new Set(
        out
          .split('\n')
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    ];
  } catch {
    pythonSiteDirs = [];
  }
  return pythonSiteDirs;
}

/** The candidate paths for `spec` in search order, computed lazily (python is asked last). */
function* candidates(spec: LibrarySpec): Generator<string> {
  // The one environment read of native/: the FFI layer sits below src/env.ts and imports
  // nothing from src/. The variables are documented and validated in src/env.ts's
  // SETTINGS (GPUGROUP_*_SO_PATH), whose test checks the names agree.
  const forced = process.env[spec.envVar];
  if (forced) {
    // An explicit path is the user's decision: try it alone so a typo is not masked.
    yield forced;
    return;
  }
  yield* spec.sonames;
  const roots = [process.env.CUDA_HOME, '/usr/local/cuda'].filter((r): r is string => !!r);
  for (const root of roots) for (const so of spec.sonames) yield join(root, 'lib64', so);
  for (const site of pythonSitePackages()) for (const rel of spec.pythonRelative) yield* expand(site, rel);
}

/**
 * Loads the first candidate that opens, pins it, and returns it. Throws
 * {@link LibraryNotFoundError} listing every path tried and the variable to set.
 */
export function loadLibrary(spec: LibrarySpec): LoadedLibrary {
  const tried: string[] = [];
  let lastError = '';
  for (const path of candidates(spec)) {
    const cached = pinned.get(path);
    if (cached) return { lib: cached, path };
    const absolute = path.includes('/');
    if (absolute && !existsSync(path)) {
      tried.push(`${path} (no such file)`);
      continue;
    }
    const handle = libc().dlopen(path, RTLD_NOW | RTLD_NODELETE);
    if (!handle) {
      lastError = libc().dlerror() ?? 'dlopen failed';
      tried.push(`${path} (${lastError})`);
      continue;
    }
    const lib = koffi.load(path);
    pinned.set(path, lib);
    return { lib, path };
  }
  throw new LibraryNotFoundError(spec.name, tried, spec.envVar, lastError ? `Last error: ${lastError}` : '');
}

/** Named koffi types are per thread and may not be defined twice. */
export function namedStruct(name: string, def: Record<string, string | TypeObject>): TypeObject {
  try {
    return koffi.type(name);
  } catch {
    return koffi.struct(name, def);
  }
}

/**
 * Loads `spec` if it can be found, for a library that another one needs beside it (the
 * wheels' libcublasLt for libcublas, libnvrtc-builtins for libnvrtc): once loaded, the
 * dynamic loader resolves the other's dependency by its soname. Never throws; a library
 * that is still missing is reported by the load that needs it.
 */
export function preloadLibrary(spec: LibrarySpec): void {
  try {
    loadLibrary(spec);
  } catch {
    // The dependent load says what is missing.
  }
}
