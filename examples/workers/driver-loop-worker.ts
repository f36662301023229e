// Rank side of examples/driver-loop.ts: vLLM's driver-worker loop. The driver (TP rank 0)
// makes each step's inputs and broadcasts them with broadcastTensorDict; the other ranks
// sit in a loop receiving them, run the "model" on them and stop when the driver
// broadcasts an empty dict (as vLLM's stop_remote_worker_execution_loop does). Every rank
// all-reduces a per-step checksum, so a rank that got different inputs is caught.
import { Tensor, type RankContext, type TensorDict } from 'gpugroup';

/** Step `step`'s inputs as the driver's scheduler would produce them: a batch of sequences. */
export function stepInputs(step: number, device: string): TensorDict {
  const batch = 4 + (step % 5); // the batch size changes from step to step
  return {
    input_ids: Tensor.fromArray(
      Array.from({ length: batch }, (_, i) => (step * 31 + i * 7) % 1000),
      { dtype: 'int32', device },
    ),
    positions: Tensor.fromArray(
      Array.from({ length: batch }, (_, i) => step + i),
      { dtype: 'int32', device },
    ),
    temperatures: Tensor.fromArray(
      Array.from({ length: batch }, (_, i) => 0.5 + 0.25 * (i % 3)),
      { dtype: 'float32' },
    ),
    step,
    is_prompt: step === 0,
  };
}

/** The "model": a number only the exact inputs give. */
async function execute(inputs: TensorDict): Promise<number> {
  const ids = (await (inputs.input_ids as Tensor).toArray()) as Int32Array;
  const pos = (await (inputs.positions as Tensor).toArray()) as Int32Array;
  const temps = (await (inputs.temperatures as Tensor).toArray()) as Float32Array;
  let sum = Number(inputs.step) * 1_000_003 + (inputs.is_prompt ? 1 : 0);
  for (let i = 0; i < ids.length; i++) sum += ids[i] * (i + 1) + pos[i] * 3 + temps[i] * 4;
  return sum;
}

/** The driver's expected checksum of step `step` (computed without any communication). */
export async function expectedChecksum(step: number): Promise<number> {
  return execute(stepInputs(step, 'cpu'));
}

/** The loop every rank runs; the driver decides how many steps. Returns each step's checksum. */
export async function loop(ctx: RankContext, args: { steps: number }) {
  const group = ctx.tp;
  const driver = group.rankInGroup === 0;
  const sums: number[] = [];
  const errors: string[] = [];
  const t0 = performance.now();
  for (let step = 0; ; step++) {
    const inputs = (await group.broadcastTensorDict(
      driver ? (step < args.steps ? stepInputs(step, ctx.device) : {}) : undefined,
      0,
    )) as TensorDict;
    if (Object.keys(inputs).length === 0) break; // the driver's stop signal
    const mine = await execute(inputs);
    // Every rank's checksum summed over the group: equal to size × mine only when all agree.
    const local = Tensor.fromArray([mine], { dtype: 'float64', device: ctx.device });
    const reduced = await group.allReduce(local);
    const total = (await reduced.toArray())[0] as number;
    local.dispose();
    reduced.dispose();
    if (total !== mine * group.worldSize)
      errors.push(`step ${step}: the ranks' checksums differ (sum ${total}, mine ${mine})`);
    sums.push(mine);
    for (const v of Object.values(inputs)) if (v instanceof Tensor) v.dispose();
  }
  return { rank: ctx.rank, driver, sums, errors, ms: performance.now() - t0 };
}
