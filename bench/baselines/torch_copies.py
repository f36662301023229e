# torch's host<->device copies on one GPU, timed as bench/copies.ts times gpugroup's:
# the call plus the wait for the stream, best of N and median, at 4 KiB, 1 MiB, 16 MiB
# and 256 MiB. Pageable: torch.from_numpy(a).to('cuda') + synchronize (h2d) and
# t.cpu().numpy() (d2h); pinned: dst.copy_(pinned, non_blocking=True) + synchronize
# (h2d_pinned) and pinned.copy_(dev, non_blocking=True) + synchronize (d2h_pinned).
# Prints JSON lines { impl: 'torch', op, world: 1, bytes, us, p50_us, GBps }.
# Usage: python3 bench/baselines/torch_copies.py [MAX_BYTES]
import json, sys, time

import numpy as np
import torch

SIZES = [4 << 10, 1 << 20, 16 << 20, 256 << 20]


def iters_for(b):
    return 300 if b <= 64 << 10 else 80 if b <= 1 << 20 else 20 if b <= 16 << 20 else 6


def timed(iters, fn):
    # The warm-up of bench/copies.ts: at least 2 calls, until 50 ms have passed, at most 5,000.
    start = time.perf_counter()
    i = 0
    while i < 5000 and (i < 2 or time.perf_counter() - start < 0.05):
        fn()
        i += 1
    xs = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1e6)
    xs.sort()
    return xs[0], xs[len(xs) // 2]


def emit(op, b, best, p50):
    print(json.dumps({"impl": "torch", "op": op, "world": 1, "bytes": b, "us": round(best, 2),
                      "p50_us": round(p50, 2), "GBps": round(b / best / 1e3, 2)}), flush=True)


def main():
    maxb = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 30
    torch.cuda.set_device(0)
    torch.ones(1, device="cuda")
    print(json.dumps({"impl": "torch", "op": "libraries", "torch": torch.__version__,
                      "cuda": torch.version.cuda, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}), flush=True)
    for b in [s for s in SIZES if s <= maxb]:
        n = b // 4
        a = ((np.arange(n) % 1000) - 500).astype(np.float32)
        dev = torch.from_numpy(a).to("cuda")
        dst = torch.empty(n, dtype=torch.float32, device="cuda")
        pinned_src = torch.from_numpy(a).pin_memory()
        pinned_dst = torch.empty(n, dtype=torch.float32).pin_memory()
        assert np.array_equal(dev.cpu().numpy(), a)
        iters = iters_for(b)

        def h2d():
            torch.from_numpy(a).to("cuda")
            torch.cuda.synchronize()

        def d2h():
            dev.cpu().numpy()

        def h2d_pinned():
            dst.copy_(pinned_src, non_blocking=True)
            torch.cuda.synchronize()

        def d2h_pinned():
            pinned_dst.copy_(dev, non_blocking=True)
            torch.cuda.synchronize()

        for op, fn in [("h2d", h2d), ("d2h", d2h), ("h2d_pinned", h2d_pinned), ("d2h_pinned", d2h_pinned)]:
            emit(op, b, *timed(iters, fn))
        del dev, dst, pinned_src, pinned_dst


if __name__ == "__main__":
    main()
