// Entry of a rank actor in a worker thread. On Node 20, tsx's hooks must be registered
// inside the thread itself before any .ts module is imported (nodejs/node#47747).
import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { runRank } = await import('../src/orchestrator/rank-runtime.ts');
runRank({
  // postMessage clones synchronously (and throws on what it cannot clone); messages
  // posted before process.exit() are still delivered.
  send: (msg) => parentPort.postMessage(msg),
  onMessage: (fn) => parentPort.on('message', fn),
  // process.exit() in a worker ends only this thread, with that exit code. An uncaught
  // error reaches the coordinator as the Worker's 'error' event.
  exit: (code) => process.exit(code),
});
