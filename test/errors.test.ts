import { describe, expect, it } from 'vitest';
import * as errors from '../src/errors.ts';
import {
  CallTimeoutError,
  CollectiveTimeoutError,
  ConnectTimeoutError,
  errorFromWire,
  errorToWire,
  GpuGroupError,
  NcclError,
  QueueTimeoutError,
  StoreTimeoutError,
  StreamTimeoutError,
  TimeoutError,
} from '../src/errors.ts';

/** Through the wire form and a structured clone, as an error crosses the actor boundary. */
const roundTrip = (err: Error): Error => errorFromWire(structuredClone(errorToWire(err, 3)));

describe('errors (src/errors.ts)', () => {
  it('one timeout class per cause, all under TimeoutError, each with its own stable code', () => {
    const cases: [TimeoutError, string][] = [
      [new StoreTimeoutError('k', 10), 'GPUGROUP_STORE_TIMEOUT'],
      [new ConnectTimeoutError('h:1', 10), 'GPUGROUP_CONNECT_TIMEOUT'],
      [new StreamTimeoutError('event', 10), 'GPUGROUP_STREAM_TIMEOUT'],
      [new CollectiveTimeoutError('g', 'all_reduce', 4, 10, []), 'GPUGROUP_COLLECTIVE_TIMEOUT'],
      [new QueueTimeoutError('q', 'dequeue', [1], 10, 'slow'), 'GPUGROUP_QUEUE_TIMEOUT'],
      [new CallTimeoutError(1, 'step', 10), 'GPUGROUP_CALL_TIMEOUT'],
    ];
    for (const [err, code] of cases) {
      expect(err).toBeInstanceOf(TimeoutError);
      expect(err.code).toBe(code);
      expect(err.timeoutMs).toBe(10);
      const back = roundTrip(err);
      expect(back).toBeInstanceOf(err.constructor);
      expect(back).toBeInstanceOf(TimeoutError);
      expect((back as TimeoutError).code).toBe(code);
      expect((back as TimeoutError).timeoutMs).toBe(10);
      expect(back.message).toBe(err.message);
    }
    expect(new StreamTimeoutError('stream', 5).message).toBe('stream synchronize did not complete within 5 ms');
    expect(new ConnectTimeoutError('h:1', 5, 'store connection', new Error('connect ECONNREFUSED')).message).toBe(
      'store connection (h:1) not established within 5 ms: connect ECONNREFUSED',
    );
  });

  it('every exported error class crosses the actor boundary as itself', () => {
    for (const [name, value] of Object.entries(errors)) {
      if (typeof value !== 'function' || !(value.prototype instanceof GpuGroupError)) continue;
      const err = Object.create(value.prototype) as Error;
      Object.defineProperty(err, 'name', { value: name });
      Object.defineProperty(err, 'message', { value: `a ${name}` });
      expect(roundTrip(err), name).toBeInstanceOf(value);
    }
  });

  it('NcclError carries the result name it was built with', () => {
    const err = new NcclError(6, 'ncclRemoteError', 'ncclCommGetAsyncError', 'remote process exited');
    expect(err.resultName).toBe('ncclRemoteError');
    expect(err.message).toBe('ncclCommGetAsyncError failed: ncclRemoteError (6): remote process exited');
  });
});
