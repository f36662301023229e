/**
 * `gpugroup run`: torchrun's job for gpugroup scripts. Starts this node's ranks as
 * child processes (torchrun's variables set; a TypeScript script through tsx), watches
 * them, and on the first failure names the rank and stops the others: SIGTERM, then
 * SIGKILL after a grace. Signals sent to the launcher (Ctrl-C) go to every rank.
 *
 * This is not launchGroup's actor path (src/orchestrator/spawn.ts): these children run
 * a user's SPMD script, speak no protocol to the launcher, and meet through the store
 * that rank 0 serves (initDistributedEnvironment).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { cudaDeviceCount, ncclAvailable } from '../../native/index.ts';
import { removeSegmentsOf } from '../comm/shm.ts';
import { InvalidArgumentError } from '../errors.ts';
import { loaderFor } from '../loader.ts';
import { TcpStoreClient, freePort } from '../store/index.ts';
import { copyTunablesEnv } from '../tensor/index.ts';
import type { RunOptions } from './args.ts';

/** A run with everything resolved: what each rank gets. */
export interface RunPlan {
  script: string;
  scriptArgs: string[];
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  backend: 'cpu' | 'nccl';
  graceMs: number;
}

/** How a rank ended. */
export interface RankExit {
  rank: number;
  localRank: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the launcher stopped it (after another rank failed, or on a signal). */
  stopped: boolean;
}

/** How the whole run ended. */
export interface RunResult {
  /** The launcher's exit code: 0, the failed rank's code, 128+signal, or 1 for a failure on another node. */
  exitCode: number;
  /** The first rank that failed on its own, if any. */
  failed: RankExit | null;
  /** What another node's launcher reported as its failure, when that stopped this node. */
  remoteFailure: string | null;
  /** The signal that interrupted the launcher, if any. */
  interrupted: NodeJS.Signals | null;
  exits: RankExit[];
}

/**
 * Fills in what the options leave open: the script's absolute path, the rank count for
 * `gpu`, the store port, and the backend for `auto` (nccl when every local rank has a
 * GPU and libnccl loads; the CUDA libraries are only touched when needed).
 */
export async function planRun(opts: RunOptions): Promise<RunPlan> {
  const script = resolve(opts.script);
  if (!existsSync(script)) throw new InvalidArgumentError('script', `no such file: ${script}`);
  loaderFor(script, 'script'); // a TypeScript script without tsx fails here, before any rank starts
  const gpus = opts.nprocPerNode === 'gpu' || opts.backend !== 'cpu' ? cudaDeviceCount() : 0;
  if (opts.nprocPerNode === 'gpu' && gpus === 0)
    throw new InvalidArgumentError('--nproc-per-node', "'gpu' needs a visible CUDA device; none is");
  const nprocPerNode = opts.nprocPerNode === 'gpu' ? gpus : opts.nprocPerNode;
  let backend: 'cpu' | 'nccl';
  if (opts.backend === 'auto') backend = gpus >= nprocPerNode && ncclAvailable() ? 'nccl' : 'cpu';
  else backend = opts.backend;
  if (backend === 'nccl' && gpus < nprocPerNode) {
    throw new InvalidArgumentError(
      '--backend',
      `nccl needs one GPU per local rank: ${nprocPerNode} ranks, ${gpus} CUDA devices visible`,
    );
  }
  return {
    script,
    scriptArgs: opts.scriptArgs,
    nprocPerNode,
    nnodes: opts.nnodes,
    nodeRank: opts.nodeRank,
    worldSize: nprocPerNode * opts.nnodes,
    masterAddr: opts.masterAddr,
    masterPort: opts.masterPort ?? (await freePort(opts.masterAddr)),
    backend,
    graceMs: opts.graceMs,
  };
}

/** The environment of local rank `localRank`, as torchrun sets it, plus gpugroup's own. */
export function rankEnv(plan: RunPlan, localRank: number): Record<string, string> {
  return {
    RANK: String(plan.nodeRank * plan.nprocPerNode + localRank),
    WORLD_SIZE: String(plan.worldSize),
    LOCAL_RANK: String(localRank),
    LOCAL_WORLD_SIZE: String(plan.nprocPerNode),
    NODE_RANK: String(plan.nodeRank),
    GROUP_RANK: String(plan.nodeRank),
    MASTER_ADDR: plan.masterAddr,
    MASTER_PORT: String(plan.masterPort),
    // Keeps simulated nodes on one host apart (shared memory, inTheSameNodeAs).
    GPUGROUP_NODE_ID: String(plan.nodeRank),
    GPUGROUP_BACKEND: plan.backend,
  };
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}

/** `exit code 3` / `signal SIGKILL`: how a rank ended, in words. */
export function describeExit(e: RankExit): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/** What the launcher does with its messages (stderr in the CLI). */
export type Log = (line: string) => void;

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** The store key through which node launchers tell each other that a rank failed. */
const FAILED_KEY = 'gpugroup/run/failed';
const WATCH_SLICE_MS = 1_000;

/** A launcher's link to the other nodes' launchers, through the job's store. */
interface NodeLink {
  report(message: string): void;
  /** Stops watching; resolves once a report in flight reached the store (at most 5 s). */
  stop(): Promise<void>;
}

/**
 * Across nodes (nnodes > 1): connects to the job's store (served by rank 0 once its
 * script has initialized; retried until then), watches the failure key and calls
 * `onRemote` with what another launcher wrote there; `report` writes this node's
 * failure. Best effort: when the store goes away (the job ended, or node 0 died) the
 * watch just stops, and the ranks meet their own store errors.
 */
function linkNodes(plan: RunPlan, onRemote: (message: string) => void, log: Log): NodeLink {
  let stopped = false;
  let reported = false;
  let pendingReport: Promise<unknown> = Promise.resolve();
  const connected = TcpStoreClient.connect({ host: plan.masterAddr, port: plan.masterPort, timeoutMs: 300_000 });
  connected.catch(() => undefined);
  void (async () => {
    try {
      const c = await connected;
      while (!stopped) {
        try {
          await c.wait([FAILED_KEY], WATCH_SLICE_MS);
        } catch (err) {
          if ((err as Error).name === 'StoreTimeoutError') continue;
          throw err;
        }
        if (!stopped && !reported) onRemote(Buffer.from(await c.get(FAILED_KEY)).toString());
        return;
      }
    } catch {
      // The store is gone or never came up: nothing more to learn from it.
    }
  })();
  return {
    report(message) {
      reported = true;
      pendingReport = connected
        .then((c) => c.set(FAILED_KEY, Buffer.from(message)))
        .catch((err: Error) => {
          log(`gpugroup run: could not tell the other nodes (${err.message})`);
        });
    },
    async stop() {
      stopped = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([pendingReport, new Promise((r) => (timer = setTimeout(r, 5_000)))]);
      clearTimeout(timer);
      void connected.then(
        (c) => c.close(),
        () => undefined,
      );
    },
  };
}

/**
 * Runs this node's ranks to the end. Resolves when every rank has exited; never
 * rejects for a rank's failure (that is in the result).
 */
export function runRanks(plan: RunPlan, log: Log): Promise<RunResult> {
  const children: { child: ChildProcess; exit: RankExit | null; rank: number; localRank: number }[] = [];
  const exits: RankExit[] = [];
  let failed: RankExit | null = null;
  let interrupted: NodeJS.Signals | null = null;
  let remoteFailure: string | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  let finish: (r: RunResult) => void = () => undefined;
  const done = new Promise<RunResult>((r) => (finish = r));

  const live = () => children.filter((c) => c.exit === null);
  /** SIGTERM (or `signal`) to every live rank; SIGKILL to those left after the grace. */
  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const c of live()) c.child.kill(signal);
    clearTimeout(killTimer);
    killTimer = setTimeout(() => {
      const left = live();
      if (left.length > 0)
        log(
          `gpugroup run: ${left.map((c) => `rank ${c.rank}`).join(', ')} still running after ${plan.graceMs} ms; sending SIGKILL`,
        );
      for (const c of left) c.child.kill('SIGKILL');
    }, plan.graceMs);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      // A second Ctrl-C: no more grace.
      for (const c of live()) c.child.kill('SIGKILL');
      return;
    }
    interrupted = signal;
    log(`gpugroup run: got ${signal}; forwarding it to ${live().length} rank(s)`);
    stopAll(signal);
  };
  for (const s of FORWARDED) process.on(s, onSignal);
  const link =
    plan.nnodes > 1
      ? linkNodes(
          plan,
          (message) => {
            if (stopping) return;
            remoteFailure = message;
            log(
              `gpugroup run: node ${plan.nodeRank}: another node failed (${message}); stopping ${live().length} rank(s)`,
            );
            stopAll('SIGTERM');
          },
          log,
        )
      : null;

  const settle = () => {
    if (live().length > 0) return;
    clearTimeout(killTimer);
    for (const s of FORWARDED) process.off(s, onSignal);
    let exitCode = 0;
    if (interrupted) exitCode = 128 + signalNumber(interrupted);
    else if (failed) exitCode = failed.code ?? 128 + signalNumber(failed.signal ?? 'SIGKILL');
    else if (remoteFailure) exitCode = 1;
    if (failed) {
      const others = exits.filter((e) => e !== failed && e.stopped).map((e) => `rank ${e.rank} ${describeExit(e)}`);
      log(
        `gpugroup run: FAILED: rank ${failed.rank} (local rank ${failed.localRank} on node ${plan.nodeRank}, pid ` +
          `${failed.pid}) ${describeExit(failed)}` +
          (others.length > 0 ? `; stopped: ${others.join(', ')}` : ''),
      );
    }
    if (remoteFailure && !failed) log(`gpugroup run: FAILED: stopped because another node failed: ${remoteFailure}`);
    const result = { exitCode, failed, remoteFailure, interrupted, exits: [...exits].sort((a, b) => a.rank - b.rank) };
    if (link) void link.stop().then(() => finish(result));
    else finish(result);
  };

  for (let localRank = 0; localRank < plan.nprocPerNode; localRank++) {
    const rank = plan.nodeRank * plan.nprocPerNode + localRank;
    const loader = loaderFor(plan.script, 'script');
    const execArgv = loader ? ['--import', loader.loader] : [];
    const child = spawn(process.execPath, [...execArgv, plan.script, ...plan.scriptArgs], {
      env: { ...process.env, ...copyTunablesEnv(process.env), ...rankEnv(plan, localRank) },
      stdio: 'inherit',
    });
    const entry: (typeof children)[number] = { child, exit: null, rank, localRank };
    children.push(entry);
    const onGone = (code: number | null, signal: NodeJS.Signals | null) => {
      if (entry.exit) return;
      // A rank killed mid-handshake may leave a shared-memory segment behind.
      if (child.pid !== undefined) removeSegmentsOf(child.pid);
      entry.exit = { rank, localRank, pid: child.pid ?? -1, code, signal, stopped: stopping };
      exits.push(entry.exit);
      if (!stopping && (code !== 0 || signal !== null)) {
        failed = entry.exit;
        link?.report(`rank ${rank} (node ${plan.nodeRank}, local rank ${localRank}) ${describeExit(entry.exit)}`);
        const others = live().length;
        log(
          `gpugroup run: rank ${rank} ${describeExit(entry.exit)}` +
            (others > 0 ? `; stopping the other ${others} rank(s)` : ''),
        );
        stopAll('SIGTERM');
      }
      settle();
    };
    child.once('exit', onGone);
    // The process could not be started at all (no 'exit' follows).
    child.on('error', (err) => {
      if (child.pid === undefined) {
        log(`gpugroup run: rank ${rank} could not start: ${err.message}`);
        onGone(127, null);
      }
    });
  }
  return done;
}
