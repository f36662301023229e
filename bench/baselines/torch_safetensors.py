"""Baseline for `npm run bench -- safetensors`: torch's safetensors.torch.load_file onto
cuda:0, the clock stopped after torch.cuda.synchronize(), on the same file.

  python3 bench/baselines/torch_safetensors.py [--file PATH] [--bytes N] [--json OUT]

PATH defaults to the file the gpugroup bench writes (same name in the temp dir, or
GPUGROUP_BENCH_SAFETENSORS_FILE); it is written here with save_file when missing. One
untimed load warms the page cache, then 3 timed loads. JSON lines: impl, op, bytes, s, GBps.
"""
import argparse
import json
import os
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file

TENSOR_BYTES = 8192 * 8192 * 2

parser = argparse.ArgumentParser()
parser.add_argument("--file")
parser.add_argument("--bytes", type=int, default=4 * 2**30)
parser.add_argument("--json")
args = parser.parse_args()
count = max(1, round(args.bytes / TENSOR_BYTES))
path = args.file or os.environ.get("GPUGROUP_BENCH_SAFETENSORS_FILE") or os.path.join(
    tempfile.gettempdir(), f"gpugroup-bench-{count}x128MiB.safetensors"
)
if not os.path.exists(path) or os.path.getsize(path) < count * TENSOR_BYTES:
    save_file({f"layers.{k}.weight": torch.full((8192, 8192), k % 64, dtype=torch.bfloat16) for k in range(count)}, path)
with open(path, "rb") as f:
    size = os.path.getsize(path) - 8 - int.from_bytes(f.read(8), "little")  # the tensors' bytes


def emit(record):
    line = json.dumps(record)
    print(line, flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")


torch.cuda.init()
torch.zeros(1, device="cuda:0")
# Untimed: warms the page cache and torch's caching allocator (gpugroup's pool is warm too).
load_file(path, device="cuda:0")
torch.cuda.synchronize()
for _ in range(3):
    t0 = time.perf_counter()
    loaded = load_file(path, device="cuda:0")
    torch.cuda.synchronize()
    s = time.perf_counter() - t0
    del loaded
    emit({"impl": "torch", "op": "safetensors_load", "bytes": size, "s": round(s, 4), "GBps": round(size / s / 1e9, 3)})
