import { fork } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { MemcpyKind, NcclDataType, NcclRedOp, cuda, cudaDeviceCount, nccl, ncclConfig } from '../../native/index.ts';
import type { RankJob, RankResult } from './fixtures/native-rank.ts';

const gpus = cudaDeviceCount();
const rankModule = new URL('./fixtures/native-rank.ts', import.meta.url);
const shim = new URL('./fixtures/thread-shim.mjs', import.meta.url);
const COUNT = 1024;

function expected(worldSize: number): number[] {
  // rank r contributes (r + 1) * (i + 1); the sum over ranks is (i + 1) * w(w+1)/2.
  const factor = (worldSize * (worldSize + 1)) / 2;
  return Array.from({ length: COUNT }, (_, i) => (i + 1) * factor);
}

function newUniqueId(): Uint8Array {
  const id: { internal?: Uint8Array } = {};
  nccl().ncclGetUniqueId(id);
  return new Uint8Array(id.internal!);
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), ms).unref()),
  ]);
}

describe.skipIf(gpus === 0)('native NCCL and CUDA on a real GPU', () => {
  it('loads libnccl and reports its version', () => {
    const lib = nccl();
    expect(lib.version).toMatch(/^2\.\d+\.\d+$/);
    expect(lib.versionCode).toBeGreaterThan(22000);
  });

  it('makes a 128-byte unique id that is not all zero', () => {
    const id = newUniqueId();
    expect(id.length).toBe(128);
    expect(id.some((b) => b !== 0)).toBe(true);
  });

  it('runs a 1-rank communicator made non-blocking through ncclCommInitRankConfig', async () => {
    const rt = cuda();
    const lib = nccl();
    rt.cudaSetDevice(0);
    const id = { internal: newUniqueId() };
    const comm = new BigUint64Array(1);
    const started = lib.ncclCommInitRankConfig(comm, 1, id, 0, ncclConfig({ blocking: 0 }));
    const state = new Int32Array(1);
    if (started === 7) {
      const deadline = Date.now() + 30_000;
      do {
        lib.ncclCommGetAsyncError(comm[0], state);
        if (state[0] !== 7) break;
        await new Promise((r) => setTimeout(r, 1));
      } while (Date.now() < deadline);
    }
    lib.ncclCommGetAsyncError(comm[0], state);
    expect(state[0]).toBe(0);
    const count = new Int32Array(1);
    lib.ncclCommCount(comm[0], count);
    expect(count[0]).toBe(1);
    lib.ncclCommUserRank(comm[0], count);
    expect(count[0]).toBe(0);
    const bufs = new BigUint64Array(2);
    rt.cudaMalloc(bufs.subarray(0, 1), 16);
    rt.cudaMalloc(bufs.subarray(1, 2), 16);
    rt.cudaMemcpy(bufs[0], new Float32Array([1, 2, 3, 4]), 16, MemcpyKind.HostToDevice);
    lib.ncclAllReduce(bufs[0], bufs[1], 4, NcclDataType.ncclFloat32, NcclRedOp.sum, comm[0], null);
    rt.cudaDeviceSynchronize();
    const out = new Float32Array(4);
    rt.cudaMemcpy(out, bufs[1], 16, MemcpyKind.DeviceToHost);
    expect(Array.from(out)).toEqual([1, 2, 3, 4]);
    lib.ncclCommDestroy(comm[0]);
    rt.cudaFree(bufs[0]);
    rt.cudaFree(bufs[1]);
  });

  it.runIf(gpus >= 2)('all-reduces across 2 worker threads using only native/', async () => {
    const idBytes = newUniqueId();
    const results = await withDeadline(
      Promise.all(
        [0, 1].map((rank) => {
          const job: RankJob = { rank, worldSize: 2, device: rank, idBytes, count: COUNT };
          const worker = new Worker(shim, { workerData: { entry: rankModule.href, job } });
          return new Promise<RankResult>((resolve, reject) => {
            worker.once('message', (m: RankResult) => {
              resolve(m);
              void worker.terminate();
            });
            worker.once('error', reject);
          });
        }),
      ),
      60_000,
      '2-thread all-reduce',
    );
    for (const [rank, r] of results.entries()) {
      expect(r.rank).toBe(rank);
      expect(r.commCount).toBe(2);
      expect(r.commDevice).toBe(rank);
      expect(r.sum).toEqual(expected(2));
    }
  });

  it.runIf(gpus >= 2)('all-reduces across 2 child processes using only native/', async () => {
    const idBytes = newUniqueId();
    const results = await withDeadline(
      Promise.all(
        [0, 1].map((rank) => {
          const child = fork(rankModule, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced' });
          const job: RankJob = { rank, worldSize: 2, device: rank, idBytes, count: COUNT };
          child.send(job);
          return new Promise<RankResult>((resolve, reject) => {
            child.once('message', (m: RankResult) => resolve(m));
            child.once('exit', (code) => code !== 0 && reject(new Error(`rank ${rank} exited with ${code}`)));
          });
        }),
      ),
      60_000,
      '2-process all-reduce',
    );
    for (const [rank, r] of results.entries()) {
      expect(r.rank).toBe(rank);
      expect(r.commDevice).toBe(rank);
      expect(r.sum).toEqual(expected(2));
    }
  });
});
