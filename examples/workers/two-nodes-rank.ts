// One rank of examples/two-nodes.ts, an SPMD script started by `gpugroup run` on each
// simulated node. It joins the job from torchrun's variables, builds TP=2 inside each
// node and PP=2 across the nodes, and checks: the layout, which ranks share a node, an
// all-reduce inside TP, and a tensor dict sent across PP and answered. It prints one
// line `two-nodes-result {json}` for the parent to collect.
import {
  Tensor,
  destroyDistributedEnvironment,
  getPpGroup,
  getTpGroup,
  getWorldGroup,
  inTheSameNodeAs,
  initDistributedEnvironment,
  initializeModelParallel,
  type TensorDict,
} from 'gpugroup';

const node = Number(process.env.NODE_RANK);
// The backend is the launcher's choice (GPUGROUP_BACKEND, read by initDistributedEnvironment).
await initDistributedEnvironment({ timeoutMs: 30_000 });
await initializeModelParallel({ tensorParallelSize: 2, pipelineParallelSize: 2 });
const world = getWorldGroup();
const tp = getTpGroup();
const pp = getPpGroup();
const rank = world.rankInGroup;
const errors: string[] = [];
const expect = (what: string, got: unknown, want: unknown) => {
  if (JSON.stringify(got) !== JSON.stringify(want))
    errors.push(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
};

// vLLM's layout: TP groups are consecutive ranks (one node each here), PP groups stride by TP.
expect('TP group', tp.ranks, [2 * node, 2 * node + 1]);
expect('PP group', pp.ranks, [rank % 2, (rank % 2) + 2]);
expect('same node as rank 0', await inTheSameNodeAs(world.cpuGroup, 0), [true, true, false, false]);

// All-reduce inside the node's TP group: node 0 sums 1 + 2, node 1 sums 3 + 4.
const x = Tensor.full([8], rank + 1, { dtype: 'float32', device: world.device });
const sum = await tp.allReduce(x);
expect('TP all-reduce', Array.from((await sum.toArray()) as Float32Array), Array(8).fill(node === 0 ? 3 : 7));

// Across the nodes: stage 0 sends activations, stage 1 checks them and sends back twice the values.
const activations = (r: number) => Array.from({ length: 16 }, (_, i) => i + 100 * r);
if (pp.isFirstRank) {
  await pp.sendTensorDict({
    hidden: Tensor.fromArray(activations(rank), { shape: [4, 4], device: world.device }),
    fromRank: rank,
    fromNode: node,
  });
  const reply = (await pp.recvTensorDict(1)) as TensorDict;
  expect(
    'reply from stage 1',
    Array.from((await (reply.hidden as Tensor).toArray()) as Float32Array),
    activations(rank).map((v) => 2 * v),
  );
  expect('reply sender', [reply.fromRank, reply.fromNode], [rank + 2, 1]);
} else {
  const got = (await pp.recvTensorDict(0)) as TensorDict;
  const hidden = got.hidden as Tensor;
  const values = Array.from((await hidden.toArray()) as Float32Array);
  expect('activations from stage 0', values, activations(rank - 2));
  expect('sender', [got.fromRank, got.fromNode, [...hidden.shape]], [rank - 2, 0, [4, 4]]);
  await pp.sendTensorDict(
    {
      hidden: Tensor.fromArray(
        values.map((v) => 2 * v),
        { shape: [4, 4], device: world.device },
      ),
      fromRank: rank,
      fromNode: node,
    },
    0,
  );
}

console.log(
  `two-nodes-result ${JSON.stringify({ rank, node, device: world.device, backend: process.env.GPUGROUP_BACKEND, errors })}`,
);
// Collective: rank 0, which serves the store, closes it only after every rank has left.
await destroyDistributedEnvironment();
process.exitCode = errors.length === 0 ? 0 : 1;
