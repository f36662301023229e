import { describe, expect, it } from 'vitest';
import { cuda } from '../../native/index.ts';
import { InvalidArgumentError } from '../../src/errors.ts';
import { setDevice, Tensor } from '../../src/tensor/index.ts';
import { useStubNative } from '../stub-native.ts';

function argumentOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return (err as InvalidArgumentError).argument;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('foreign memory: bad input is refused before any native call', () => {
  it('fromDevicePointer names the argument it rejects', () => {
    expect(argumentOf(() => Tensor.fromDevicePointer(0n, [4], 'float32', 'cuda:0'))).toBe('ptr');
    expect(argumentOf(() => Tensor.fromDevicePointer(-8n, [4], 'float32', 'cuda:0'))).toBe('ptr');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096 as unknown as bigint, [4], 'float32', 'cuda:0'))).toBe('ptr');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096n, [4, -1], 'float32', 'cuda:0'))).toBe('shape');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096n, [4], 'float17' as never, 'cuda:0'))).toBe('dtype');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096n, [4], 'float32', 'cpu'))).toBe('device');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096n, [4], 'float32', 'gpu0'))).toBe('device');
    expect(argumentOf(() => Tensor.fromDevicePointer(4096n, [4], 'float32', 'cuda:0', { onDispose: 3 as never }))).toBe(
      'onDispose',
    );
  });

  it('fromIpcHandle names the argument it rejects', () => {
    const hex = 'ab'.repeat(64);
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: 'ab', offset: 0 }, [4], 'float32', 'cuda:0'))).toBe(
      'handle',
    );
    expect(
      argumentOf(() => Tensor.fromIpcHandle({ handle: 'zz'.repeat(64), offset: 0 }, [4], 'float32', 'cuda:0')),
    ).toBe('handle');
    expect(
      argumentOf(() => Tensor.fromIpcHandle({ handle: new Uint8Array(63), offset: 0 }, [4], 'float32', 'cuda:0')),
    ).toBe('handle');
    expect(argumentOf(() => Tensor.fromIpcHandle(null as never, [4], 'float32', 'cuda:0'))).toBe('handle');
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: -1 }, [4], 'float32', 'cuda:0'))).toBe(
      'offset',
    );
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: 1.5 }, [4], 'float32', 'cuda:0'))).toBe(
      'offset',
    );
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: 0 }, [4.5], 'float32', 'cuda:0'))).toBe(
      'shape',
    );
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: 0 }, [4], 'int4' as never, 'cuda:0'))).toBe(
      'dtype',
    );
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: 0 }, [4], 'float32', 'cpu'))).toBe('device');
    expect(argumentOf(() => Tensor.fromIpcHandle({ handle: hex, offset: 0, bytes: 8 }, [4], 'float32', 'cuda:0'))).toBe(
      'shape',
    );
  });

  it('ipcHandle refuses host tensors, and ipc: true needs a device', () => {
    expect(argumentOf(() => Tensor.zeros([4]).ipcHandle())).toBe('tensor');
    expect(argumentOf(() => Tensor.empty([4], { ipc: true }))).toBe('ipc');
  });
});

// Device paths on the stand-in library (device memory is host memory there).
const stub = useStubNative();

describe.skipIf(!stub)('foreign memory on the stand-in CUDA library', () => {
  if (stub) setDevice(0);

  it('a tensor over a foreign pointer reads that memory and calls onDispose once, for every view', async () => {
    const owner = Tensor.fromArray([1, 2, 3, 4, 5, 6], { dtype: 'float32', device: 'cuda:0' });
    let calls = 0;
    const t = Tensor.fromDevicePointer(owner.dataPtr, [2, 3], 'float32', 'cuda:0', { onDispose: () => calls++ });
    expect(t.dataPtr).toBe(owner.dataPtr);
    expect(Array.from((await t.toArray()) as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    const row = t.narrow(0, 1, 1);
    expect(Array.from((await row.toArray()) as Float32Array)).toEqual([4, 5, 6]);
    row.dispose();
    expect(calls).toBe(1);
    t.dispose();
    row.dispose();
    expect(calls).toBe(1);
    // The memory was not freed by gpugroup: the owner still reads it.
    expect(Array.from((await owner.toArray()) as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    owner.dispose();
  });

  it('ipcHandle refuses pool memory and says how to get exportable memory', () => {
    const pool = Tensor.zeros([16], { device: 'cuda:0' });
    expect(() => pool.ipcHandle()).toThrow(/stream-ordered pool.*ipc: true/);
    pool.dispose();
  });

  it('an { ipc: true } tensor exports a 64-byte handle and the offset of a view; the handle opens to the same bytes', async () => {
    const src = Tensor.full([8], 3, { dtype: 'int32', device: 'cuda:0', ipc: true });
    expect(src.storage.kind === 'device' && src.storage.origin).toBe('malloc');
    const zeros = Tensor.zeros([2, 4], { dtype: 'float32', device: 'cuda:0', ipc: true });
    expect(Array.from((await zeros.toArray()) as Float32Array)).toEqual(new Array(8).fill(0));
    const whole = src.ipcHandle();
    expect(whole.handle).toMatch(/^[0-9a-f]{128}$/);
    expect(whole).toMatchObject({ offset: 0, bytes: 32 });
    const view = src.narrow(0, 2, 4);
    const h = view.ipcHandle();
    expect(h).toMatchObject({ handle: whole.handle, offset: 8, bytes: 16 });
    expect(JSON.parse(JSON.stringify(h))).toEqual(h);
    // The stand-in's handle carries the pointer, so this process can open its own (CUDA cannot).
    const opened = Tensor.fromIpcHandle(h, [4], 'int32', 'cuda:0');
    expect(opened.storage.kind === 'device' && opened.storage.origin).toBe('ipc');
    expect(opened.dataPtr).toBe(view.dataPtr);
    expect(Array.from((await opened.toArray()) as Int32Array)).toEqual([3, 3, 3, 3]);
    expect(() => opened.ipcHandle()).toThrow(/opened from another process/);
    // A second tensor from the same allocation shares the mapping; each reads after the other goes.
    const second = Tensor.fromIpcHandle({ handle: h.handle, offset: 0 }, [8], 'int32', 'cuda:0');
    expect(second.dataPtr).toBe(src.dataPtr);
    opened.dispose();
    expect(Array.from((await second.toArray()) as Int32Array)).toEqual(new Array(8).fill(3));
    second.dispose();
    expect(() => view.movedim(0, 0).reshape([2, 2]).movedim(0, 1).ipcHandle()).toThrow(/contiguous/);
    src.dispose();
    zeros.dispose();
  });

  it('a foreign tensor exports the handle of its allocation base and its offset inside it', () => {
    const owner = Tensor.zeros([64], { dtype: 'uint8', device: 'cuda:0', ipc: true });
    const foreign = Tensor.fromDevicePointer(owner.dataPtr + 16n, [8], 'uint8', 'cuda:0');
    const raw = new Uint8Array(64);
    cuda().cudaIpcGetMemHandle(raw, owner.dataPtr + 16n);
    // The stand-in reports every pointer as its own base.
    expect(foreign.ipcHandle()).toEqual({ handle: Buffer.from(raw).toString('hex'), offset: 0, bytes: 8 });
    foreign.dispose();
    owner.dispose();
  });
});
