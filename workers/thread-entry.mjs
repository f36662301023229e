// Entry of a rank actor in a worker thread. Plain JavaScript, so that Node starts it with
// no loader. When the rank needs tsx (gpugroup running from its sources, or a TypeScript
// worker module), `workerData.tsx` is tsx's register() module: on Node 20 its hooks must
// be registered inside the thread itself before any .ts module is imported (nodejs/node#47747).
import { parentPort, workerData } from 'node:worker_threads';

if (workerData.tsx) (await import(workerData.tsx)).register();
const { runRank } = await import(workerData.runtime);
runRank({
  // postMessage clones synchronously (and throws on what it cannot clone); messages
  // posted before process.exit() are still delivered.
  send: (msg) => parentPort.postMessage(msg),
  onMessage: (fn) => parentPort.on('message', fn),
  // process.exit() in a worker ends only this thread, with that exit code. An uncaught
  // error reaches the coordinator as the Worker's 'error' event.
  exit: (code) => process.exit(code),
});
