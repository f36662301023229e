#!/bin/bash
# Builds the stand-in CUDA/NCCL library (stub.c) and prints the variables that make
# gpugroup load it. Host-overhead measurements only: nothing runs on a GPU.
#   eval "$(bash bench/stub-native/build.sh)"; npm run bench -- collectives --world 2
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${STUB_OUT:-/tmp/gpugroup-stub}
mkdir -p "$out"
cc -O2 -shared -fPIC -o "$out/libgpugroup-stub.so" "$here/stub.c"
for v in GPUGROUP_CUDART_SO_PATH GPUGROUP_NCCL_SO_PATH GPUGROUP_CUDA_DRIVER_SO_PATH; do echo "export $v=$out/libgpugroup-stub.so"; done
