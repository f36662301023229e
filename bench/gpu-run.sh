#!/bin/bash
# The whole GPU measurement in one device call (run from the repository root on the GPU
# machine, .device carried): the GPU test suite (SKIP_TESTS=1 leaves it out), the baselines (nccl-tests and torch,
# NCCL 2.28.9 from the python packages), gpugroup's sweep on the same libnccl, and the
# comparison. Usage: bash bench/gpu-run.sh WORLD OUTDIR
set -uo pipefail
world=${1:?world}; out=${2:?outdir}
export NO_COLOR=1
nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))')
export GPUGROUP_NCCL_SO_PATH=$nccl
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 240 bash .device/gpu-run.sh npm run test:gpu > "$out/gpu-tests.log" 2>&1; echo "test:gpu rc=$?"
  grep -E "Test Files|Tests " "$out/gpu-tests.log"
fi
timeout 300 bash .device/baselines/run.sh "$world" "$out" > "$out/baselines.log" 2>&1; echo "baselines rc=$?"
timeout 270 bash .device/gpu-run.sh npm run bench -- collectives coordinator graphs orchestrator weights --backend nccl --world "$world" --json "$out/ours.jsonl" > "$out/bench.log" 2>&1; echo "bench rc=$?"
grep -v '^{' "$out/bench.log" | tail -40
bash .device/gpu-run.sh node .device/baselines/compare.mjs "$out/baselines.jsonl" "$out/ours.jsonl" > "$out/compare.tsv" 2>&1
cat "$out/compare.tsv"
