#!/bin/bash
# The multi-rank GPU tests on a machine with fewer GPUs than ranks: N process ranks share
# GPU 0 (launchGroup's shareDevices: NCCL over its socket transport on loopback, the
# ranks' kernels time-sharing the GPU). It checks correctness on real NCCL; no timing
# from such a run means anything. Run from the repository root on a machine with a GPU
# (Node and node_modules there, or a .device/gpu-run.sh wrapper that provides them):
#   bash bench/rehearse-gpu.sh N OUTDIR [SECONDS] [vitest filters...]
set -uo pipefail
n=${1:?ranks}; out=${2:?outdir}; limit=${3:-300}; shift 3 2>/dev/null || shift $#
export NO_COLOR=1 GPUGROUP_TEST_SHARED_RANKS=$n
# The libnccl the baselines load (2.28.9, in the python packages).
GPUGROUP_NCCL_SO_PATH=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))')
export GPUGROUP_NCCL_SO_PATH
mkdir -p "$out"
log="$out/rehearsal-$n.log"
runner=(); [ -f .device/gpu-run.sh ] && runner=(bash .device/gpu-run.sh)
timeout "$limit" "${runner[@]}" npx vitest run --project gpu "$@" > "$log" 2>&1
echo "rehearsal of $n ranks on one GPU: rc=$? (log $log)"
grep -E "✓|✗|×|↓|FAIL|Test Files|Tests " "$log" | tail -60
