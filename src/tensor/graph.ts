/**
 * CUDA graph capture, under parallel_state.py's graph_capture and
 * GroupCoordinator.graph_capture: `captureCudaGraph(fn)` runs `fn` on a fresh
 * capture stream that first waits for the current stream; every NCCL collective and
 * copy `fn` enqueues is recorded into a CUDA graph instead of running. Tensors
 * allocated during capture are allocation nodes owned by the graph: they hold the
 * results of each replay and live as long as the graph. The graph is instantiated
 * with auto-free-on-launch, so replaying never grows device memory.
 */
import { CaptureMode, cuda } from '../../native/index.ts';
import { InvalidArgumentError } from '../errors.ts';
import { beginGraphAllocations, endGraphAllocations, type DeviceStorage } from './storage.ts';
import { Stream, currentStream, withStream } from './stream.ts';

/** What a capture function receives: the stream it is captured on (vLLM's GraphCaptureContext). */
export interface GraphCaptureContext {
  stream: Stream;
}

const AUTO_FREE_ON_LAUNCH = 1;

/** An instantiated CUDA graph and the value its capture function returned. */
export class CudaGraph<T = unknown> {
  private launched = false;
  private disposed = false;

  constructor(
    private readonly exec: bigint,
    private readonly graph: bigint,
    private readonly owned: DeviceStorage[],
    /** What the capture function returned (typically the output tensors). */
    readonly result: T,
  ) {}

  /** Launches the graph on `stream` (default: the current stream). */
  replay(stream: Stream = currentStream()): void {
    if (this.disposed) throw new InvalidArgumentError('graph', 'the graph was disposed');
    cuda().cudaGraphLaunch(this.exec, stream.handle);
    this.launched = true;
  }

  /** Frees the graph and the memory it owns (after its last replay completes); idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const rt = cuda();
    const stream = currentStream().handle;
    rt.cudaStreamSynchronize(stream);
    // Allocation nodes hand out memory only when launched; before that there is nothing to free.
    if (this.launched) for (const s of this.owned) s.releaseFromGraph(stream);
    rt.cudaGraphExecDestroy(this.exec);
    rt.cudaGraphDestroy(this.graph);
  }
}

/** Captures what `fn` enqueues (on a CUDA device) into a CUDA graph. */
export async function captureCudaGraph<T>(
  fn: (ctx: GraphCaptureContext) => Promise<T> | T,
  context?: GraphCaptureContext,
): Promise<CudaGraph<T>> {
  const rt = cuda();
  const ctx = context ?? { stream: new Stream() };
  // Earlier work on the current stream (e.g. the inputs' initialization) comes first.
  ctx.stream.waitStream(currentStream());
  return withStream(ctx.stream, async () => {
    // Thread-local: another rank thread of this process may use CUDA meanwhile.
    rt.cudaStreamBeginCapture(ctx.stream.handle, CaptureMode.ThreadLocal);
    beginGraphAllocations();
    const graphOut = new BigUint64Array(1);
    let result: T;
    try {
      result = await fn(ctx);
    } catch (err) {
      // End the capture whatever state it is in, and drop the partial graph.
      endGraphAllocations();
      try {
        rt.cudaStreamEndCapture(ctx.stream.handle, graphOut);
        if (graphOut[0] !== 0n) rt.cudaGraphDestroy(graphOut[0]);
      } catch {
        // An invalidated capture ends with an error of its own; the first error is the one to report.
      }
      throw err;
    }
    const owned = endGraphAllocations();
    rt.cudaStreamEndCapture(ctx.stream.handle, graphOut);
    const exec = new BigUint64Array(1);
    rt.cudaGraphInstantiate(exec, graphOut[0], AUTO_FREE_ON_LAUNCH);
    return new CudaGraph(exec[0], graphOut[0], owned, result);
  });
}
