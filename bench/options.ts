/** What every bench suite's `run` receives (bench/index.ts parses it from the command line). */
export interface BenchOptions {
  json: (record: object) => void;
  log: (line: string) => void;
  world?: number;
  backend?: 'nccl' | 'cpu';
  minBytes?: number;
  maxBytes?: number;
  /** Rank actors as child processes (default) or worker threads of one process. */
  mode?: 'process' | 'thread';
  /** True when --mode was given (suites that run both modes by default run only that one). */
  modeGiven?: boolean;
  /** Ranks share GPU 0 (launchGroup's shareDevices): device timings mean nothing there. */
  shareDevices?: boolean;
}
