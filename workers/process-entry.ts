// Entry of a rank actor in its own process (forked by the coordinator with tsx loaded).
import { runRank } from '../src/orchestrator/rank-runtime.ts';
import type { ToRank } from '../src/orchestrator/protocol.ts';

// The coordinator is gone (even SIGKILLed): leave at once rather than orphan a GPU.
process.on('disconnect', () => process.exit(1));

runRank({
  send: (msg) => process.send!(msg),
  onMessage: (fn) => process.on('message', (m) => fn(m as ToRank)),
  exit: (code) => process.exit(code),
});
