/**
 * Enqueueing on a chosen stream without making it current across an await: the
 * current stream is per thread, and while a transfer awaits, other calls on the same
 * actor must keep enqueueing on their own stream. So only the synchronous part (the
 * enqueue) runs with `stream` current; the promise it returns is awaited outside.
 */
import { currentStream, setCurrentStream, type Stream } from '../tensor/index.ts';

/** Runs `fn` synchronously with `stream` current (no stream: as is), then restores the previous stream. */
export function enqueueOn<T>(stream: Stream | null | undefined, fn: () => T): T {
  if (!stream) return fn();
  const previous = currentStream();
  setCurrentStream(stream);
  try {
    return fn();
  } finally {
    setCurrentStream(previous);
  }
}
