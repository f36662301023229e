import { fork } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CallTimeoutError, RankFailedError } from '../../src/errors.ts';
import type { RankExitEvent } from '../../src/orchestrator/index.ts';
import { TcpStoreClient } from '../../src/store/index.ts';
import { MODES, alive, eventually, launch, portFree } from '../helpers.ts';

describe.each(MODES)('failures in %s mode', (mode) => {
  it('process.exit(3) in a rank fails every pending and later call with RankFailedError within 2 s', async () => {
    const group = await launch({ mode });
    const exits: RankExitEvent[] = [];
    group.on('rank-exit', (e) => exits.push(e));
    const abortSeen = group.call(0, 'waitForAbort');
    const t0 = performance.now();
    const pending = group.callAll('exitWith', 3, 2).catch((e) => e);
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err.rank).toBe(2);
    expect(err.exitCode).toBe(3);
    expect(err.signal).toBeNull();
    expect(exits).toHaveLength(1);
    expect(exits[0]).toMatchObject({ rank: 2, code: 3, signal: null });
    expect(exits[0].error).toBe(err);
    // The pending call on rank 0 was failed too (the group failed as a whole) ...
    await expect(abortSeen).rejects.toBe(err);
    // ... and later calls fail the same way.
    await expect(group.call(1, 'whoami')).rejects.toBe(err);
  });

  it('an uncaught exception in a rank becomes RankFailedError', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const err = await group.callAll('crashUncaught', 1).catch((e) => e);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err.rank).toBe(1);
    expect(err.exitCode).toBe(1);
  });

  it('the surviving ranks are told to abort (their abortSignal fires with the RankFailedError)', async () => {
    const group = await launch({ mode, worldSize: 3 });
    await group.callAll('recordAbort');
    const exits: RankExitEvent[] = [];
    group.on('rank-exit', (e) => exits.push(e));
    await group.callAll('exitWith', 7, 1).catch(() => undefined);
    const store = await TcpStoreClient.connect({ ...group.storeAddress, timeoutMs: 2_000 });
    try {
      for (const r of [0, 2]) {
        const reason = Buffer.from(await store.get(`aborted/${r}`)).toString();
        expect(reason).toMatch(/RankFailedError: rank 1 failed \(exit code 7\)/);
      }
    } finally {
      store.close();
    }
    expect(exits[0].rank).toBe(1);
    await group.shutdown();
    expect(exits.map((e) => e.rank).sort()).toEqual([0, 1, 2]);
  });

  it('a call past its deadline fails with CallTimeoutError at the deadline', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const t0 = performance.now();
    const err = await group.callWithOptions(1, 'never', [], { timeoutMs: 300 }).catch((e) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(CallTimeoutError);
    expect(err).toMatchObject({ rank: 1, fn: 'never', timeoutMs: 300 });
    expect(took).toBeGreaterThanOrEqual(295);
    expect(took).toBeLessThan(1_000);
    expect(await group.call(1, 'echo', 'ok')).toEqual(['ok']);
  });

  it('shutdown after a failure still ends everything', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const port = group.storeAddress.port;
    await group.callAll('exitWith', 5, 0).catch(() => undefined);
    await group.shutdown();
    expect(await portFree(port)).toBe(true);
    if (mode === 'process') for (const pid of group.pids) expect(alive(pid)).toBe(false);
  });
});

describe('failures only a process can have', () => {
  it('SIGKILL mid-call gives RankFailedError with signal SIGKILL', async () => {
    const group = await launch({ mode: 'process', worldSize: 2 });
    const pending = group.call(1, 'never').catch((e) => e);
    const t0 = performance.now();
    process.kill(group.pids[1], 'SIGKILL');
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(RankFailedError);
    expect(err).toMatchObject({ rank: 1, exitCode: null, signal: 'SIGKILL' });
  });

  it('killing the coordinator with SIGKILL makes every rank exit within 5 s', async () => {
    const child = fork(new URL('../fixtures/coordinator.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout!.on('data', (d) => {
        buf += d;
        if (buf.includes('\n')) resolve(buf.split('\n')[0]);
      });
      child.once('exit', (code) => reject(new Error(`coordinator exited early (${code})`)));
    });
    const { pids, port } = JSON.parse(line) as { pids: number[]; port: number };
    expect(pids.every(alive)).toBe(true);
    child.kill('SIGKILL');
    const took = await eventually(() => pids.every((p) => !alive(p)), 5_000, 'ranks exit after the coordinator died');
    expect(took).toBeLessThan(5_000);
    expect(await portFree(port)).toBe(true);
  }, 20_000);
});
