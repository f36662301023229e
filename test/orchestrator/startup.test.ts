import { describe, expect, it } from 'vitest';
import { CallTimeoutError, InvalidArgumentError, RankFailedError } from '../../src/errors.ts';
import { launchGroup } from '../../src/orchestrator/index.ts';
import { TcpStoreServer } from '../../src/store/index.ts';
import { MODES, basicWorker, portFree } from '../helpers.ts';
import { childPids, resourceCounts } from './procs.ts';

async function freePort(): Promise<number> {
  const probe = await TcpStoreServer.listen();
  const port = probe.port;
  await probe.close();
  return port;
}

/** Lets closed handles leave getActiveResourcesInfo(). */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe.each(MODES)('startup in %s mode', (mode) => {
  it('a rank that fails during startup rejects launchGroup with RankFailedError and leaves nothing behind', async () => {
    await settle();
    const before = resourceCounts();
    const masterPort = await freePort();
    const t0 = performance.now();
    const err = await launchGroup({
      worldSize: 3,
      mode,
      backend: 'cpu',
      masterPort,
      timeoutMs: 20_000,
      worker: new URL('../fixtures/fail-at-import.ts', import.meta.url),
      env: { FAIL_RANK: '1' },
    }).catch((e) => e);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err).toMatchObject({ rank: 1, exitCode: 1, signal: null });
    expect(err.message).toMatch(/^rank 1 failed \(exit code 1\): during startup: .*import failed on purpose on rank 1/);
    expect(childPids()).toEqual([]);
    expect(await portFree(masterPort)).toBe(true);
    await settle();
    expect(resourceCounts()).toEqual(before);
  });

  it('a launch past startupTimeoutMs rejects with CallTimeoutError naming the rank that is not ready', async () => {
    await settle();
    const before = resourceCounts();
    const masterPort = await freePort();
    const t0 = performance.now();
    const err = await launchGroup({
      worldSize: 2,
      mode,
      backend: 'cpu',
      masterPort,
      startupTimeoutMs: 2_000,
      worker: new URL('../fixtures/hang-at-import.ts', import.meta.url),
      env: { HANG_RANK: '1' },
    }).catch((e) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(CallTimeoutError);
    expect(err).toMatchObject({ rank: 1, fn: 'launchGroup', timeoutMs: 2_000 });
    expect(took).toBeGreaterThanOrEqual(1_995);
    expect(took).toBeLessThan(2_000 + 2_500); // deadline + the failed launch's 1 s grace + exits
    expect(childPids()).toEqual([]);
    expect(await portFree(masterPort)).toBe(true);
    await settle();
    expect(resourceCounts()).toEqual(before);
  });

  it("ranks get torchrun's variables", async () => {
    const masterPort = await freePort();
    const group = await launchGroup({
      worldSize: 2,
      mode,
      backend: 'cpu',
      masterPort,
      worker: basicWorker,
      timeoutMs: 20_000,
    });
    try {
      expect(await group.callAll('torchrunEnv')).toEqual(
        [0, 1].map((r) => ({
          RANK: String(r),
          LOCAL_RANK: String(r),
          WORLD_SIZE: '2',
          LOCAL_WORLD_SIZE: '2',
          GROUP_RANK: '0',
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(masterPort),
        })),
      );
    } finally {
      await group.shutdown();
    }
  });
});

describe('shareDevices (a multi-GPU rehearsal on fewer GPUs)', () => {
  it("gives every rank process a host id of its own for NCCL; the user's NCCL settings win", async () => {
    const group = await launchGroup({
      worldSize: 3,
      mode: 'process',
      backend: 'cpu',
      worker: basicWorker,
      devices: [0, 0, 0],
      shareDevices: true,
      env: { NCCL_SOCKET_IFNAME: 'eth9' },
      timeoutMs: 20_000,
    });
    try {
      const envs = await group.callAll<{ NCCL_HOSTID: string; NCCL_SOCKET_IFNAME: string; NCCL_IB_DISABLE: string }>(
        'ncclEnv',
      );
      expect(new Set(envs.map((e) => e.NCCL_HOSTID)).size).toBe(3);
      envs.forEach((e, rank) => {
        expect(e.NCCL_HOSTID).toBe(`gpugroup-${process.pid}-0-${rank}`);
        expect(e.NCCL_SOCKET_IFNAME).toBe('eth9');
        expect(e.NCCL_IB_DISABLE).toBe(process.env.NCCL_IB_DISABLE ?? '1');
      });
    } finally {
      await group.shutdown();
    }
  });

  it('without it, ranks get no host id from gpugroup', async () => {
    const group = await launchGroup({
      worldSize: 2,
      mode: 'process',
      backend: 'cpu',
      worker: basicWorker,
      timeoutMs: 20_000,
    });
    try {
      for (const e of await group.callAll<{ NCCL_HOSTID?: string }>('ncclEnv'))
        expect(e.NCCL_HOSTID).toBe(process.env.NCCL_HOSTID);
    } finally {
      await group.shutdown();
    }
  });
});

describe('copy settings of rank processes', () => {
  const x64Linux = process.platform === 'linux' && process.arch === 'x64';
  it.runIf(x64Linux)(
    "process ranks get glibc's non-temporal memcpy threshold unless GLIBC_TUNABLES is given",
    async () => {
      const plain = await launchGroup({ worldSize: 2, mode: 'process', backend: 'cpu', worker: basicWorker });
      try {
        const want = process.env.GLIBC_TUNABLES ?? 'glibc.cpu.x86_non_temporal_threshold=65536';
        expect(await plain.callAll('glibcTunables')).toEqual([want, want]);
      } finally {
        await plain.shutdown();
      }
      const own = await launchGroup({
        worldSize: 1,
        mode: 'process',
        backend: 'cpu',
        worker: basicWorker,
        env: { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' },
      });
      try {
        expect(await own.callAll('glibcTunables')).toEqual(['glibc.malloc.arena_max=2']);
      } finally {
        await own.shutdown();
      }
    },
  );
});

describe('invalid options', () => {
  it('a duplicate device is rejected before any process, thread or port exists', async () => {
    await settle();
    const before = resourceCounts();
    const err = await launchGroup({ worldSize: 3, worker: basicWorker, mode: 'process', devices: [0, 1, 0] }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err.argument).toBe('devices');
    expect(err.message).toBe(
      'devices: cuda:0 is given to two ranks; one GPU per rank (two ranks on one device would deadlock NCCL; ' +
        'shareDevices rehearses on fewer GPUs)',
    );
    expect(childPids()).toEqual([]);
    expect(resourceCounts()).toEqual(before);
  });
});
