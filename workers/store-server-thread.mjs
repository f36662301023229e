// A TcpStoreServer in its own worker thread (src/store/server-thread.ts), so that a
// rank whose thread blocks in a native call (an NCCL connection setup) keeps serving
// its peers. When gpugroup runs from its sources, `workerData.tsx` is tsx's register()
// module, registered inside the thread first (nodejs/node#47747).
import { parentPort, workerData } from 'node:worker_threads';

if (workerData.tsx) (await import(workerData.tsx)).register();
const { TcpStoreServer } = await import(workerData.server);
try {
  const server = await TcpStoreServer.listen(workerData.options);
  parentPort.on('message', async (msg) => {
    if (msg !== 'close') return;
    await server.close();
    parentPort.close();
  });
  parentPort.postMessage({ port: server.port });
} catch (err) {
  parentPort.postMessage({ error: err instanceof Error ? err.message : String(err) });
  parentPort.close();
}
