/**
 * `npm run bench -- orchestrator [--world N] [--backend nccl|cpu] [--mode thread|process]
 * [--share-devices]`: launch to ready (launchGroup's promise resolved: ranks spawned,
 * store connected, device set, world group and TP/PP/DP/EP groups built with their
 * communicators), median and best of 5 launches per mode (3 with --share-devices), then
 * the call round trip.
 * Default: 4 ranks on the CPU backend, both modes (--mode picks one).
 *
 * On NCCL with more than one rank it times both ways of making the subgroup
 * communicators, split from the world's (GPUGROUP_NCCL_SUBGROUPS=split, the default)
 * and a unique id and init per group (=init), one after the other in the same run.
 * --share-devices puts every rank on GPU 0 (launchGroup's shareDevices, process mode
 * only): the one-GPU rehearsal of a multi-rank launch. GPUGROUP_LOG=info adds each
 * rank's init, split and warm-up times per communicator.
 */
import { launchGroup } from '../src/orchestrator/index.ts';
import type { BenchOptions } from './options.ts';
import { percentiles } from './stats.ts';

const worker = new URL('../test/fixtures/basic-worker.ts', import.meta.url);
/** Launches per variant (a one-GPU rehearsal of several ranks takes seconds each: 3). */
const launchesFor = (shared: boolean): number => (shared ? 3 : 5);

export async function run(opts: BenchOptions): Promise<void> {
  const world = opts.world ?? 4;
  const backend = opts.backend ?? 'cpu';
  const shared = opts.shareDevices ?? false;
  const modes: ('thread' | 'process')[] = shared
    ? ['process']
    : opts.modeGiven
      ? [opts.mode ?? 'process']
      : ['thread', 'process'];
  // The default (split) first: a rehearsal cut at its time limit still has it.
  const variants: ('split' | 'init')[] = backend === 'nccl' && world > 1 ? ['split', 'init'] : ['split'];
  const before = process.env.GPUGROUP_NCCL_SUBGROUPS;
  try {
    for (const mode of modes) {
      for (const subgroups of variants) {
        process.env.GPUGROUP_NCCL_SUBGROUPS = subgroups;
        await launches(opts, { world, backend, mode, shared, subgroups, roundTrip: subgroups === 'split' });
      }
    }
  } finally {
    if (before === undefined) delete process.env.GPUGROUP_NCCL_SUBGROUPS;
    else process.env.GPUGROUP_NCCL_SUBGROUPS = before;
  }
}

async function launches(
  opts: BenchOptions,
  c: {
    world: number;
    backend: 'nccl' | 'cpu';
    mode: 'thread' | 'process';
    shared: boolean;
    subgroups: 'split' | 'init';
    roundTrip: boolean;
  },
): Promise<void> {
  const times: number[] = [];
  const count = launchesFor(c.shared);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const group = await launchGroup({
      worldSize: c.world,
      worker,
      mode: c.mode,
      backend: c.backend,
      timeoutMs: 120_000,
      ...(c.shared ? { devices: Array<number>(c.world).fill(0), shareDevices: true } : {}),
    });
    times.push(performance.now() - t0);
    if (c.roundTrip && i === count - 1) {
      const samples: number[] = [];
      for (let j = 0; j < 2000; j++) {
        const c0 = performance.now();
        await group.call(0, 'echo');
        if (j >= 200) samples.push((performance.now() - c0) * 1000);
      }
      const rt = percentiles(samples);
      opts.log(`${c.mode}: call round trip p50 ${rt.p50} us, p99 ${rt.p99} us`);
      opts.json({
        impl: 'gpugroup',
        op: 'call_round_trip',
        world: c.world,
        mode: c.mode,
        backend: c.backend,
        p50_us: rt.p50,
        p99_us: rt.p99,
      });
    }
    await group.shutdown();
  }
  const sorted = times.sort((a, b) => a - b);
  const median = sorted[Math.floor(count / 2)] / 1000;
  const best = sorted[0] / 1000;
  const how = c.backend === 'nccl' && c.world > 1 ? `, subgroups by ${c.subgroups}` : '';
  opts.log(
    `${c.mode}: launch to ready (${c.world} ranks, ${c.backend}${c.shared ? ', sharing GPU 0' : ''}${how}) ` +
      `median of ${count}: ${median.toFixed(3)} s, best ${best.toFixed(3)} s`,
  );
  opts.json({
    impl: 'gpugroup',
    // The default way keeps the op name the baselines' launch_to_ready joins on.
    op: c.subgroups === 'split' ? 'launch_to_ready' : 'launch_to_ready_subgroups_init',
    world: c.world,
    mode: c.mode,
    backend: c.backend,
    subgroups: c.subgroups,
    ...(c.shared ? { shared_gpu: true } : {}),
    s: +median.toFixed(3),
    best_s: +best.toFixed(3),
  });
}
