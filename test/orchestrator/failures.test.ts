import { fork } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CallTimeoutError, GroupClosedError, InvalidArgumentError, RankFailedError } from '../../src/errors.ts';
import type { RankExitEvent } from '../../src/orchestrator/index.ts';
import { TcpStoreClient } from '../../src/store/index.ts';
import { MODES, alive, eventually, launch, portFree } from '../helpers.ts';
import { childPids } from './procs.ts';

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

  it.each([
    ['an uncaught exception', 'crashUncaught', /^rank 1 failed \(exit code 1\): .*boom/],
    ['an unhandled rejection', 'rejectUnhandled', /^rank 1 failed \(exit code 1\): .*rejected on purpose/],
  ])(
    '%s in a rank becomes RankFailedError naming the cause within 2 s, and the group emits error',
    async (_what, fn, message) => {
      const group = await launch({ mode, worldSize: 2 });
      const errors: Error[] = [];
      group.on('error', (e) => errors.push(e));
      const t0 = performance.now();
      const err = await group.callAll(fn, 1).catch((e) => e);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(err).toBeInstanceOf(RankFailedError);
      expect(err).toMatchObject({ rank: 1, exitCode: 1, signal: null });
      expect(err.message).toMatch(message);
      expect(errors).toEqual([err]);
    },
  );

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

  it('per-call deadlines apply to callAll too, and a bad one is refused', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const t0 = performance.now();
    const err = await group.callAllWithOptions('never', [], { timeoutMs: 200 }).catch((e) => e);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(195);
    expect(err).toBeInstanceOf(CallTimeoutError);
    expect(err).toMatchObject({ rank: 0, fn: 'never', timeoutMs: 200 });
    const bad = (await group.callWithOptions(0, 'echo', [], { timeoutMs: -1 }).catch((e) => e)) as InvalidArgumentError;
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    expect(bad.argument).toBe('timeoutMs');
  });

  it('values the channel cannot carry fail that call only, naming the direction', async () => {
    const group = await launch({ mode, worldSize: 1 });
    const res = (await group.call(0, 'returnFunction').catch((e) => e)) as InvalidArgumentError;
    expect(res).toBeInstanceOf(InvalidArgumentError);
    expect(res.argument).toBe('result');
    expect(res.message).toMatch(/the result of 'returnFunction' on rank 0 cannot cross to the coordinator/);
    const arg = (await group.call(0, 'echo', () => 1).catch((e) => e)) as InvalidArgumentError;
    expect(arg).toBeInstanceOf(InvalidArgumentError);
    expect(arg.argument).toBe('args');
    const out = await group.call<{ y: Float32Array; big: bigint }>(0, 'scale', new Float32Array([1, 2]), 5n);
    expect(out.y).toEqual(new Float32Array([1, 2]));
    expect(out.big).toBe(5n);
  });

  it('shutdown rejects pending calls with GroupClosedError and resolves once every actor is gone', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const exits: RankExitEvent[] = [];
    group.on('rank-exit', (e) => exits.push(e));
    const pending = group.callAll('never').catch((e) => e);
    await group.shutdown();
    expect(await pending).toBeInstanceOf(GroupClosedError);
    expect(exits.map((e) => e.rank).sort()).toEqual([0, 1]);
    expect(exits.every((e) => e.code === 0 && e.signal === null && e.error === undefined)).toBe(true);
    expect(childPids()).toEqual([]);
  });

  it('a rank whose event loop is blocked is killed at the shutdown deadline', async () => {
    const group = await launch({ mode, worldSize: 2 });
    const exits: RankExitEvent[] = [];
    group.on('rank-exit', (e) => exits.push(e));
    const stuck = group.call(1, 'spin', 60_000).catch((e) => e);
    await new Promise((r) => setTimeout(r, 100)); // the rank is inside spin()
    const t0 = performance.now();
    await group.shutdown(300);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(295);
    expect(took).toBeLessThan(2_000);
    expect(await stuck).toBeInstanceOf(GroupClosedError);
    const killed = exits.find((e) => e.rank === 1)!;
    // SIGKILL for a process; a terminated thread exits with code 1.
    expect(killed).toMatchObject(mode === 'process' ? { code: null, signal: 'SIGKILL' } : { code: 1, signal: null });
    expect(childPids()).toEqual([]);
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
    const child = fork(new URL('../fixtures/coordinator.ts', import.meta.url), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
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
