/**
 * vLLM's WeightTransferEngineFactory (weight_transfer/factory.py): engines by backend name.
 * `nccl` is registered up front and loaded lazily; others register a class, or a
 * module path plus the name of the class it exports (imported on first use).
 */
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError } from '../errors.ts';
import type { WeightTransferEngine } from './engine.ts';

/** An engine class: constructed with the options given to {@link createWeightTransferEngine}. */
export type WeightTransferEngineClass = new (opts?: never) => WeightTransferEngine<unknown, unknown>;

type Loader = () => Promise<WeightTransferEngineClass>;

const registry = new Map<string, Loader>([
  ['nccl', async () => (await import('./engine.ts')).NcclWeightTransferEngine as unknown as WeightTransferEngineClass],
]);

/**
 * Registers an engine under `name`: a class, or a module path (file path or URL) and
 * the name of the class it exports. A name registered twice is an InvalidArgumentError.
 */
export function registerWeightTransferEngine(name: string, cls: WeightTransferEngineClass): void;
export function registerWeightTransferEngine(name: string, modulePath: string | URL, className: string): void;
export function registerWeightTransferEngine(
  name: string,
  target: WeightTransferEngineClass | string | URL,
  className?: string,
): void {
  if (typeof name !== 'string' || name === '')
    throw new InvalidArgumentError('name', `expected a non-empty string, got ${JSON.stringify(name)}`);
  if (registry.has(name))
    throw new InvalidArgumentError('name', `Weight transfer engine '${name}' is already registered.`);
  if (typeof target === 'function') {
    registry.set(name, async () => target);
    return;
  }
  if (typeof target !== 'string' && !(target instanceof URL))
    throw new InvalidArgumentError('target', 'expected an engine class or a module path');
  if (typeof className !== 'string' || className === '')
    throw new InvalidArgumentError('className', 'className is required when registering with a module path');
  const url = target instanceof URL ? target.href : /^[a-z]+:/.test(target) ? target : pathToFileURL(target).href;
  registry.set(name, async () => {
    const mod = (await import(url)) as Record<string, unknown>;
    const cls = mod[className];
    if (typeof cls !== 'function')
      throw new InvalidArgumentError('className', `module ${url} exports no class '${className}'`);
    return cls as WeightTransferEngineClass;
  });
}

/** Names of the registered engines. */
export function availableWeightTransferEngines(): string[] {
  return [...registry.keys()];
}

/**
 * vLLM's `create_engine`: an engine of `backend` built with `opts` (for `nccl`, the
 * {@link NcclWeightTransferEngine} options). An unknown backend is an InvalidArgumentError.
 */
export async function createWeightTransferEngine(
  backend: string,
  opts?: unknown,
): Promise<WeightTransferEngine<unknown, unknown>> {
  const load = registry.get(backend);
  if (!load) {
    throw new InvalidArgumentError(
      'backend',
      `Invalid weight transfer backend: ${backend}. Available engines: [${availableWeightTransferEngines()
        .map((n) => `'${n}'`)
        .join(', ')}]`,
    );
  }
  const cls = await load();
  return new cls(opts as never);
}
