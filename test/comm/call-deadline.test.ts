// An operation's deadline is its own timeout or its call's deadline, whichever comes first.
import { describe, expect, it } from 'vitest';
import { FlightRecorder, callDeadline, withCallDeadline } from '../../src/comm/index.ts';
import { CollectiveTimeoutError, formatFlightRecords } from '../../src/errors.ts';
import { destroyAll, input, makeComms, useStore } from './cpu-helpers.ts';

useStore();

describe('call deadlines', () => {
  it('the flight recorder finds the operation whose call deadline passed first', () => {
    const rec = new FlightRecorder();
    const t0 = performance.now();
    rec.start('all_reduce', 'float32', 4);
    withCallDeadline(t0 + 50, () => rec.start('broadcast', 'float32', 8, 0));
    expect(rec.overdue(10_000, t0 + 40)).toBeNull();
    const late = rec.overdue(10_000, t0 + 60);
    expect(late?.record).toMatchObject({ op: 'broadcast', seq: 1, endMs: null });
    expect(late?.timeoutMs).toBeLessThanOrEqual(50);
    expect(rec.overdue(10_000, t0 + 20_000)?.record.op).toBe('broadcast'); // its deadline passed first
    rec.finishThrough(1);
    expect(rec.overdue(10_000, t0 + 20_000)).toBeNull();
  });

  it('a record without a start time gets one from the first question about it, and counts from then', () => {
    const rec = new FlightRecorder();
    const t0 = performance.now();
    rec.start('all_reduce', 'float32', 4); // NCCL's hot path reads no clock
    rec.finishThrough(0); // finished before anybody asked: its start stays unknown
    rec.start('all_gather', 'float32', 8, null, t0 - 5_000); // the CPU backend gives the time
    rec.start('broadcast', 'float32', 2, 0);
    expect(rec.recent().map((r) => r.startMs)).toEqual([Number.NaN, t0 - 5_000, Number.NaN]);
    // The watchdog's poll: the unfinished record without a start gets this one.
    expect(rec.overdue(1_000, t0 + 10)?.record).toMatchObject({ op: 'all_gather', startMs: t0 - 5_000 });
    expect(rec.recent().map((r) => r.startMs)).toEqual([Number.NaN, t0 - 5_000, t0 + 10]);
    rec.finishThrough(1);
    expect(rec.overdue(1_000, t0 + 1_009)).toBeNull();
    expect(rec.overdue(1_000, t0 + 1_010)).toMatchObject({
      record: { op: 'broadcast', startMs: t0 + 10 },
      timeoutMs: 1_000,
    });
    expect(formatFlightRecords(rec.recent())).toMatch(
      /#0 all_reduce float32×4 done\n\s+#1 all_gather float32×8 \d+\.\d ms\n\s+#2 broadcast float32×2 peer=0 pending/,
    );
  });

  it('a call holds its deadline until what it returns settles; overlapping calls take the latest', async () => {
    expect(callDeadline()).toBe(Number.POSITIVE_INFINITY);
    let endA!: () => void;
    let endB!: (e: Error) => void;
    const a = withCallDeadline(1_000, () => new Promise<void>((resolve) => (endA = resolve)));
    expect(callDeadline()).toBe(1_000);
    const b = withCallDeadline(2_000, () => new Promise<void>((_, reject) => (endB = reject)));
    expect(callDeadline()).toBe(2_000); // never earlier than the deadline of the call that issued it
    endB(new Error('b failed'));
    await expect(b).rejects.toThrow('b failed');
    expect(callDeadline()).toBe(1_000);
    endA();
    await a;
    expect(callDeadline()).toBe(Number.POSITIVE_INFINITY);
    expect(withCallDeadline(500, () => callDeadline())).toBe(500);
    expect(() =>
      withCallDeadline(600, () => {
        throw new Error('sync failure');
      }),
    ).toThrow('sync failure');
    expect(callDeadline()).toBe(Number.POSITIVE_INFINITY);
  });

  it.each(['sab', 'shm'] as const)(
    'a CPU collective only one rank enters fails at its call deadline, not its own (%s)',
    async (transport) => {
      const comms = await makeComms(2, { transport, timeoutMs: 30_000 });
      const t0 = performance.now();
      const err = (await withCallDeadline(t0 + 400, () => comms[0].allReduce(input(0, [4], 'float32'))).catch(
        (e) => e,
      )) as CollectiveTimeoutError;
      const took = performance.now() - t0;
      expect(err).toBeInstanceOf(CollectiveTimeoutError);
      expect(err.op).toBe('all_reduce');
      expect(err.message).toMatch(/^all_reduce #0 in group '.*' did not complete within (3\d\d|400) ms/);
      expect(err.message).toMatch(/Last ops:\n\s+#0 all_reduce float32×4 pending/);
      expect(took).toBeGreaterThanOrEqual(390);
      expect(took).toBeLessThan(5_000);
      await destroyAll(comms);
    },
  );
});
