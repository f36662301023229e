"""torch baseline for `npm run bench -- compute`: the same ops, sizes and timing.

matmul 8192^3 bfloat16 (TFLOP/s = 2mnk per call) and torch.add of two 256 MiB float32
and bfloat16 tensors (GB/s counting two reads and one write). Median over 5 runs of 20
calls timed with CUDA events, after 5 warm-up calls. One JSON line per figure on stdout:
impl, op, dtype, bytes, us, tflops or gbps.

    python3 bench/baselines/torch_compute.py > torch-compute.jsonl
"""
import json

import torch

RUNS = 5
CALLS = 20


def time_us(fn):
    for _ in range(5):
        fn()
    per = []
    for _ in range(RUNS):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(CALLS):
            fn()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1000 / CALLS)
    per.sort()
    return per[len(per) // 2]


def main():
    dev = torch.device("cuda:0")
    n = 8192
    a = torch.full((n, n), 0.5, dtype=torch.bfloat16, device=dev)
    b = torch.full((n, n), 0.25, dtype=torch.bfloat16, device=dev)
    assert torch.all(torch.matmul(a, b)[0] == 1024)
    us = time_us(lambda: torch.matmul(a, b))
    print(json.dumps({"impl": "torch", "op": "matmul", "dtype": "bfloat16", "m": n, "n": n, "k": n,
                      "bytes": 3 * n * n * 2, "us": us, "tflops": 2 * n ** 3 / us / 1e6}), flush=True)
    del a, b
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        nbytes = 256 << 20
        numel = nbytes // torch.tensor([], dtype=dtype).element_size()
        x = torch.full((numel,), 1, dtype=dtype, device=dev)
        y = torch.full((numel,), 2, dtype=dtype, device=dev)
        assert torch.all(torch.add(x, y)[-4:] == 3)
        us = time_us(lambda: torch.add(x, y))
        print(json.dumps({"impl": "torch", "op": "add", "dtype": name, "bytes": nbytes, "us": us,
                          "gbps": 3 * nbytes / us / 1e3}), flush=True)
        del x, y


if __name__ == "__main__":
    main()
