// Runs a command as a child process with a deadline and collects its output: for the
// launcher and example tests (test/cli, test/examples, test/gpu/examples.test.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const gpugroupBin = fileURLToPath(new URL('../../bin/gpugroup.mjs', import.meta.url));

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Command {
  child: ChildProcess;
  /** Resolves when the process exits; rejects (after SIGKILLing it) past the deadline. */
  done: Promise<CommandResult>;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
}

/** Starts `node args…` in the repository root; SIGKILLed and rejected after `deadlineMs`. */
export function startNode(args: string[], deadlineMs: number, env: Record<string, string> = {}): Command {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CommandResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `node ${args.join(' ')}: not done within ${deadlineMs} ms\n--- stdout\n${stdout}\n--- stderr\n${stderr}`,
        ),
      );
    }, deadlineMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    });
  });
  return { child, done, stdout: () => stdout, stderr: () => stderr };
}

/** Runs `node args…` to the end (see {@link startNode}). */
export function runNode(args: string[], deadlineMs: number, env: Record<string, string> = {}): Promise<CommandResult> {
  return startNode(args, deadlineMs, env).done;
}

/** The JSON lines of an output (other lines ignored). */
export function jsonLines<T = Record<string, unknown>>(out: string): T[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}
