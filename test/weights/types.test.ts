// Init/update info parsing and validation (vLLM's weight_transfer base.py, nccl_engine.py), the engine factory,
// and the errors an engine gives before any communicator exists.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors.ts';
import {
  DEFAULT_PACKED_BUFFER_SIZE_BYTES,
  NcclWeightTransferEngine,
  WeightTransferEngine,
  WeightTransferNotInitializedError,
  availableWeightTransferEngines,
  createWeightTransferEngine,
  parseNcclInitInfo,
  parseNcclUpdateInfo,
  registerWeightTransferEngine,
} from '../../src/weights/index.ts';

const init = { masterAddress: '127.0.0.1', masterPort: 29_500, rankOffset: 1, worldSize: 3 };
const update = { names: ['a', 'b'], dtypeNames: ['float32', 'bfloat16'], shapes: [[2, 3], []] };

function thrown(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error('expected a throw');
}

describe('init info', () => {
  it('parses camelCase and vLLM snake_case keys to the same info', () => {
    expect(parseNcclInitInfo(init)).toEqual(init);
    expect(
      parseNcclInitInfo({ master_address: '127.0.0.1', master_port: 29_500, rank_offset: 1, world_size: 3 }),
    ).toEqual(init);
  });

  it.each([
    [{ ...init, bogus: 1 }, /unexpected keyword argument 'bogus'/],
    [{ masterAddress: 'h', masterPort: 1, rankOffset: 1 }, /missing required argument 'worldSize'/],
    [{ ...init, masterPort: 70_000 }, /'masterPort' must be an integer in \[1, 65535\], got 70000/],
    [{ ...init, rankOffset: -1 }, /'rankOffset' must be an integer in \[0, /],
    [{ ...init, masterAddress: '' }, /'masterAddress' must be a non-empty string/],
    [null, /expected a plain object, got null/],
  ])('rejects %j as "Invalid init_info"', (obj, message) => {
    const err = thrown(() => parseNcclInitInfo(obj));
    expect(err.argument).toBe('initInfo');
    expect(err.message).toMatch(/^initInfo: Invalid init_info for NcclWeightTransferEngine: /);
    expect(err.message).toMatch(message);
  });
});

describe('update info', () => {
  it("fills vLLM's defaults: unpacked, 1 GiB buffers, 2 of them, checkpoint format", () => {
    expect(parseNcclUpdateInfo(update)).toEqual({
      ...update,
      packed: false,
      packedBufferSizeBytes: DEFAULT_PACKED_BUFFER_SIZE_BYTES,
      packedNumBuffers: 2,
      isCheckpointFormat: true,
    });
    expect(DEFAULT_PACKED_BUFFER_SIZE_BYTES).toBe(1 << 30);
    expect(
      parseNcclUpdateInfo({ names: [], dtype_names: [], shapes: [], packed: true, packed_buffer_size_bytes: 100 })
        .packedBufferSizeBytes,
    ).toBe(100);
  });

  it('names dtypeNames or shapes when a list length differs from names', () => {
    const a = thrown(() => parseNcclUpdateInfo({ ...update, dtypeNames: ['float32'] }));
    expect(a.argument).toBe('dtypeNames');
    expect(a.message).toBe('dtypeNames: `dtypeNames` should be of the same size as `names`: got 1 and 2');
    const b = thrown(() => parseNcclUpdateInfo({ ...update, shapes: [[1], [2], [3]] }));
    expect(b.argument).toBe('shapes');
    expect(b.message).toBe('shapes: `shapes` should be of the same size as `names`: got 3 and 2');
  });

  it.each([
    [{ ...update, dtypeNames: ['float32', 'complex64'] }, /unknown dtype 'complex64'/],
    [
      { ...update, shapes: [[2, -3], []] },
      /Invalid update_info .*shapes\[0\] must be an array of non-negative integers/,
    ],
    [
      { ...update, packedBufferSizeBytes: 0 },
      /Invalid update_info .*'packedBufferSizeBytes' must be an integer in \[1, /,
    ],
    [{ ...update, packedNumBuffers: 1.5 }, /'packedNumBuffers' must be an integer/],
    [{ ...update, packed: 'yes' }, /'packed' must be a boolean/],
    [{ names: ['a'], shapes: [[1]] }, /missing required argument 'dtypeNames'/],
    [{ ...update, extra: true }, /unexpected keyword argument 'extra'/],
  ])('rejects %j', (obj, message) => {
    expect(() => parseNcclUpdateInfo(obj)).toThrow(message);
  });
});

describe('engine factory', () => {
  it("creates the pre-registered 'nccl' engine", async () => {
    const engine = await createWeightTransferEngine('nccl', { device: 'cpu' });
    expect(engine).toBeInstanceOf(NcclWeightTransferEngine);
    expect(availableWeightTransferEngines()).toContain('nccl');
  });

  it('rejects an unknown backend, listing the available ones', async () => {
    await expect(createWeightTransferEngine('ipc')).rejects.toThrow(
      /^backend: Invalid weight transfer backend: ipc\. Available engines: \['nccl'/,
    );
  });

  it('rejects a second registration of a name, and a module path without a class name', () => {
    class Dummy extends NcclWeightTransferEngine {}
    registerWeightTransferEngine('dummy-test', Dummy);
    expect(() => registerWeightTransferEngine('dummy-test', Dummy)).toThrow(
      "name: Weight transfer engine 'dummy-test' is already registered.",
    );
    expect(() => registerWeightTransferEngine('nccl', Dummy)).toThrow(/already registered/);
    expect(() => registerWeightTransferEngine('lazy-test', './x.ts', '')).toThrow(
      /^className: className is required when registering with a module path/,
    );
  });

  it('loads an engine lazily from a module path and a class name', async () => {
    registerWeightTransferEngine(
      'lazy-engine',
      new URL('../../src/weights/engine.ts', import.meta.url),
      'NcclWeightTransferEngine',
    );
    const engine = await createWeightTransferEngine('lazy-engine', { device: 'cpu' });
    expect(engine).toBeInstanceOf(WeightTransferEngine);
  });
});

describe('engine before init', () => {
  it('receiveWeights says the engine is not initialized', async () => {
    const engine = new NcclWeightTransferEngine({ device: 'cpu' });
    const err = await engine.receiveWeights(update, () => {}).catch((e: Error) => e);
    expect(err).toBeInstanceOf(WeightTransferNotInitializedError);
    expect((err as Error).message).toBe('NCCL weight transfer not initialized. Call initTransferEngine() first.');
  });

  it('computes the worker rank as dpRank × worldSizePerDp + rank + rankOffset, and refuses rank 0 or past worldSize', async () => {
    const engine = new NcclWeightTransferEngine({ device: 'cpu', parallel: { dpRank: 2, worldSize: 4, rank: 3 } });
    expect(engine.transferRank({ ...init, rankOffset: 1 })).toBe(12);
    const forRank = NcclWeightTransferEngine.forRank({
      device: 'cpu',
      tp: { rankInGroup: 1, worldSize: 2 },
      pp: { rankInGroup: 1, worldSize: 2 },
      dp: { rankInGroup: 1 },
    });
    expect(forRank.transferRank({ ...init, rankOffset: 1 })).toBe(1 * 4 + (1 * 2 + 1) + 1);
    await expect(engine.initTransferEngine({ ...init, worldSize: 12 })).rejects.toThrow(
      /transfer rank is 12 .* outside \[1, 12\)/,
    );
    await expect(
      new NcclWeightTransferEngine({ device: 'cpu' }).initTransferEngine({ ...init, rankOffset: 0 }),
    ).rejects.toThrow(/rank 0 is the trainer/);
    expect(() => new NcclWeightTransferEngine({ parallel: { dpRank: 0, worldSize: 2, rank: 2 } })).toThrow(
      /^parallel\.rank: 2 is out of range \[0, 2\)/,
    );
  });
});
