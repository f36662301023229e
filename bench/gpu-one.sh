#!/bin/bash
# One device call for the one-GPU figures: the baselines (torch's copies, nccl-tests and
# torch at world 1) and gpugroup's suites, run one after the other with a time limit
# each (about 8 minutes in all), then one comparison table. Run from the repository root
# on the GPU machine with the .device kit carried (Node, node_modules, the baselines and
# its gpu-run.sh). Results go to OUTDIR, never into the repository: the JSON lines and
# table.txt at its top, the stages' output in OUTDIR/logs (stages.log, gpu-tests.log), six
# files in all, so that a device call brings every one back; the table is also printed.
#   bash bench/gpu-one.sh OUTDIR
# GPU_ONE_TESTS="test/gpu/copies.test.ts ..." runs those GPU test files first (they share the budget);
# GPU_ONE_MAX_BYTES caps the collective sweeps (default 256 MiB).
# GPU_ONE_CPU: the one CPU that the host-bound comparisons run on (default: the last one
# this shell may use; "none" leaves them unpinned).
set -uo pipefail
out=${1:?usage: bash bench/gpu-one.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
export NO_COLOR=1
maxb=${GPU_ONE_MAX_BYTES:-268435456}
# gpugroup loads the NCCL that nccl-tests and torch use: the one in the python packages.
nccl_lib=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))')
export GPUGROUP_NCCL_SO_PATH=$nccl_lib
echo "NCCL for gpugroup: $GPUGROUP_NCCL_SO_PATH"
node_run="bash .device/gpu-run.sh"
rm -f "$out"/*.jsonl
mkdir -p "$out/logs" && : > "$out/logs/stages.log"

# stage SECONDS NAME COMMAND...: runs COMMAND under a time limit, its output appended to
# OUTDIR/logs/stages.log under a header (the GPU tests: OUTDIR/logs/gpu-tests.log).
# Limits are cut to what is left of GPU_ONE_BUDGET_S (default 560 s, so that the whole,
# table included, fits a 10-minute device call); a stage with no time left is skipped.
budget=${GPU_ONE_BUDGET_S:-560}
stage() {
  local secs=$1 name=$2 t0=$SECONDS rc left log from
  shift 2
  log="$out/logs/stages.log"
  [ "$name" = gpu-tests ] && log="$out/logs/gpu-tests.log" && : > "$log"
  left=$((budget - SECONDS - 15))
  if [ "$left" -lt 10 ]; then echo "stage $name: skipped (time budget spent)"; return; fi
  [ "$secs" -gt "$left" ] && secs=$left
  from=$(($(wc -l < "$log") + 1))
  echo "=== stage $name" >> "$log"
  timeout "$secs" "$@" >> "$log" 2>&1
  rc=$?
  echo "stage $name: rc=$rc in $((SECONDS - t0)) s (limit $secs s; log: $log)"
  tail -n "+$from" "$log" | grep -E "Test Files|Tests |failed|Error" | head -5
}

# The host-bound comparisons (gpugroup's collectives and host cost, nccl-tests, torch's
# world-1 ops, launch) run pinned to one CPU, both sides alike, so that neither side gets
# CPUs the other did not. At 8 B–32 KiB NCCL's own cost per call is the host's, and on a
# 16-CPU H200 virtual machine it moved with the moment more than with the CPU: nccl-tests
# all-gather in six unpinned runs in a row 5.6–7.9 µs per op; pinned to one CPU, 4.2–5.2
# in one call and 5.1–8.2 in another. Hence the raw koffi loops in gpugroup's own rank,
# taking turns with gpugroup's: the table's last line is gpugroup's own cost over them.
# The copies stay unpinned: they use the host's copy threads.
cpu=${GPU_ONE_CPU:-$(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' | tail -1 | sed 's/.*-//')}
pin=(taskset -c "$cpu"); [ "$cpu" = none ] && pin=()

[ -n "${GPU_ONE_TESTS:-}" ] && stage 200 gpu-tests $node_run npx vitest run --project gpu $GPU_ONE_TESTS
# One line per suite: seconds, name, command. JSON lines land in OUTDIR/*.jsonl.
stage 90  torch-copies bash -c "python3 bench/baselines/torch_copies.py > '$out/torch-copies.jsonl'"
# The copies run with the glibc setting gpugroup gives the rank processes it starts
# (non-temporal memcpy into the staging chunks: see src/tensor/host-copy.ts).
stage 120 copies       env GLIBC_TUNABLES=${GLIBC_TUNABLES-glibc.cpu.x86_non_temporal_threshold=65536} $node_run npm run bench -- copies --json "$out/gpugroup.jsonl"
# gpugroup's sweep runs before the nccl-tests build and the baselines stage (nccl-tests,
# then torch): in one device call the same sweep gave all-reduce
# 5.0–6.8 µs per op (8 B–32 KiB) before that stage and 6.3–8.2 µs after it, the host cost
# of a call unchanged (5.42 / 5.55 µs); the cause was not found.
stage 100 collectives   "${pin[@]}" $node_run npm run bench -- collectives --world 1 --backend nccl --max-bytes "$maxb" --json "$out/gpugroup.jsonl"
# nccl-tests is built (make -j16) on a machine's first run, not on the one pinned CPU: by
# the baselines script itself, at 8 bytes only, its output set aside.
[ -x /tmp/nt/all_reduce_perf ] || stage 200 nccl-tests-build bash .device/baselines/run.sh 1 "$out/logs/build" 8
rm -rf "$out/logs/build"
stage 270 baselines    "${pin[@]}" bash .device/baselines/run.sh 1 "$out" "$maxb"
stage 40  collectives-host "${pin[@]}" $node_run npm run bench -- collectives-host --json "$out/gpugroup.jsonl"
stage 60  orchestrator "${pin[@]}" $node_run npm run bench -- orchestrator --world 1 --backend nccl --json "$out/gpugroup.jsonl"

echo "# collectives, host cost, nccl-tests, torch at world 1 and launch pinned to CPU: $cpu" | tee "$out/table.txt"
$node_run npx tsx bench/gpu-one-table.ts "$out" 2>&1 | grep -v '^node v' | tee -a "$out/table.txt"
