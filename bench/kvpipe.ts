/**
 * `npm run bench -- kvpipe [--backend cpu]`: the KV pipe between two ranks (NcclPipe):
 * throughput of 16 MiB and 256 MiB tensors (op `send_recv`, `busbw` = bytes / time, as
 * nccl-tests' sendrecv reports for 2 ranks) and the p50 one-way latency of a 4 KiB tensor
 * with its metadata (op `kv_pipe_small`, `us`, half a round trip), and of a null item
 * (op `kv_pipe_null`: the metadata path alone), and the host time per tensor on each side
 * (ops `kv_pipe_host_send` / `kv_pipe_host_recv`: per sendTensor call, and per recvTensor
 * call with the items already queued by the sender). GPUGROUP_BENCH_KV_HOST_ONLY=1 runs
 * the host-time part alone (with the stand-in library: gpugroup's own host work).
 */
import { cudaDeviceCount } from '../native/index.ts';
import { type Group, launchGroup } from '../src/orchestrator/index.ts';
import { freePort } from '../src/store/index.ts';
import { tableHeader, tableLine } from './table.ts';
import type { BenchOptions } from './options.ts';

export async function run(opts: BenchOptions): Promise<void> {
  const gpus = cudaDeviceCount();
  const backend = opts.backend ?? (gpus >= 2 ? 'nccl' : 'cpu');
  if (opts.world !== undefined && opts.world !== 2)
    opts.log(`kvpipe: always 2 ranks (a prefill and a decode rank); --world ${opts.world} does not apply`);
  if (backend === 'nccl' && gpus < 2 && !opts.shareDevices) {
    opts.log(
      `kvpipe: NCCL needs 2 GPUs, ${gpus} visible; skipped (--backend cpu, or --share-devices for a rehearsal on one GPU)`,
    );
    return;
  }
  const group = await launchGroup({
    worldSize: 2,
    worker: new URL('./workers/kvpipe.ts', import.meta.url),
    backend,
    mode: 'process',
    timeoutMs: 300_000,
    ...(opts.shareDevices && backend === 'nccl' ? { devices: [0, 0], shareDevices: true } : {}),
  });
  try {
    await group.callAll('open', await freePort());
    opts.log(tableHeader());
    const sizes =
      backend === 'nccl'
        ? [
            [16 << 20, 40],
            [256 << 20, 10],
          ]
        : [
            [1 << 20, 20],
            [16 << 20, 5],
          ];
    const hostOnly = process.env.GPUGROUP_BENCH_KV_HOST_ONLY === '1';
    for (const [bytes, count] of hostOnly ? [] : sizes) {
      const [, s] = await group.callAll<number>('stream', { bytes, count });
      const busbw = +((bytes * count) / s / 1e9).toFixed(2);
      opts.log(
        tableLine({ op: 'kv_pipe_send_recv', bytes, count: bytes, dtype: 'uint8', us: (s / count) * 1e6, busbw }),
      );
      opts.json({
        impl: 'gpugroup',
        op: 'send_recv',
        world: 2,
        backend,
        bytes,
        us: +((s / count) * 1e6).toFixed(2),
        busbw,
        via: 'NcclPipe',
      });
    }
    if (!hostOnly) await latencies(opts, group, backend);
    for (const bytes of [4096, 1 << 20]) {
      const sides = await group.callAll<{ side: string; us: number }>('hostPerTensor', {
        bytes,
        count: 200,
        rounds: 5,
      });
      opts.log(
        `kv pipe host time per tensor of ${bytes} B (${backend}): ${sides.map((x) => `${x.side} ${x.us} us`).join(', ')}`,
      );
      for (const x of sides)
        opts.json({ impl: 'gpugroup', op: `kv_pipe_host_${x.side}`, world: 2, backend, bytes, us: x.us });
    }
    await group.callAll('close');
    if (hostOnly) return;
    // Reference: the same traffic as plain send/recv on the group's communicator.
    const [bytes, count] = sizes[0];
    const [ref] = await group.callAll<{ streamS: number; smallP50: number }>('raw', { bytes, count, iters: 500 });
    const busbw = +((bytes * count) / ref.streamS / 1e9).toFixed(2);
    opts.log(
      `reference, plain send/recv on the group's communicator: ${bytes} B × ${count}: ${busbw} GB/s; 4 KiB one way ` +
        `(synchronized): p50 ${ref.smallP50} us`,
    );
    // Its own op name, so that compare.mjs joins the baselines' send_recv with the pipe's figure only.
    opts.json({
      impl: 'gpugroup',
      op: 'send_recv_plain',
      world: 2,
      backend,
      bytes,
      us: +((ref.streamS / count) * 1e6).toFixed(2),
      busbw,
      via: 'communicator',
    });
    opts.json({
      impl: 'gpugroup',
      op: 'send_recv_small_sync',
      world: 2,
      backend,
      bytes: 4096,
      us: ref.smallP50,
      p50_us: ref.smallP50,
      via: 'communicator',
    });
  } finally {
    await group.shutdown();
  }
}

async function latencies(opts: BenchOptions, group: Group, backend: string): Promise<void> {
  const [lat] = await group.callAll<{ p50: number; p99: number; min: number }>('small', 500);
  opts.log(`kv pipe 4 KiB tensor + metadata, one way (${backend}): p50 ${lat.p50} us, p99 ${lat.p99} us`);
  opts.json({
    impl: 'gpugroup',
    op: 'kv_pipe_small',
    world: 2,
    backend,
    bytes: 4096,
    us: lat.p50,
    p50_us: lat.p50,
    p99_us: lat.p99,
  });
  const [meta] = await group.callAll<{ p50: number; p99: number; min: number }>('small', 500, true);
  opts.log(`kv pipe null item (metadata alone), one way (${backend}): p50 ${meta.p50} us, p99 ${meta.p99} us`);
  opts.json({
    impl: 'gpugroup',
    op: 'kv_pipe_null',
    world: 2,
    backend,
    bytes: 0,
    us: meta.p50,
    p50_us: meta.p50,
    p99_us: meta.p99,
  });
}
