#!/usr/bin/env python3
"""PyTorch SDPA's memory on the same sweep as `flashgrad memprofile` (attention scope), measured
the same way: extra peak bytes of one forward + backward beyond the inputs (q, k, v, dO), with
the gradients counted. Run it on the GPU machine beside flashgrad to compare like with like.

The inputs are stored as flashgrad stores them, contiguous [B, N, H, D], and handed to SDPA as
[B, H, N, D] views (which the flash backend reads without a copy); the gradients PyTorch makes
then have that layout too.

    python3 bench/memprofile_sdpa.py [--max-len 131072] [--csv FILE]
"""
import argparse
import csv
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

MIB = 1024 * 1024


def measure(n, backend, b, h, d, dtype, causal):
    torch.cuda.empty_cache()
    q, k, v = (torch.randn(b, n, h, d, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    do = torch.randn(b, n, h, d, device="cuda", dtype=dtype)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        with sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                               v.transpose(1, 2), is_causal=causal)
        o.backward(do.transpose(1, 2))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    except torch.OutOfMemoryError:
        return None
    finally:
        del q, k, v, do
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-len", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=131072)
    ap.add_argument("--csv", default="")
    a = ap.parse_args()
    lens = []
    n = a.min_len
    while n <= a.max_len:
        lens.append(n)
        n *= 2
    print(f"PyTorch {torch.__version__} SDPA on {torch.cuda.get_device_name()}: B=1 H=16 D=64 bf16 causal;"
          " extra peak bytes of forward + backward beyond q, k, v, dO (gradients counted)")
    print(f"{'N':>8} {'math (MiB)':>14} {'flash (MiB)':>14}")
    rows = []
    math_oom = False
    for n in lens:
        m = None if math_oom else measure(n, SDPBackend.MATH, 1, 16, 64, torch.bfloat16, True)
        math_oom = math_oom or m is None
        f = measure(n, SDPBackend.FLASH_ATTENTION, 1, 16, 64, torch.bfloat16, True)
        fmt = lambda x: "OOM" if x is None else f"{x / MIB:.2f}"
        print(f"{n:>8} {fmt(m):>14} {fmt(f):>14}", flush=True)
        rows.append((n, m, f))
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["N", "math_extra_peak_bytes", "flash_extra_peak_bytes"])
            for n, m, f in rows:
                w.writerow([n, "OOM" if m is None else m, "OOM" if f is None else f])


if __name__ == "__main__":
    sys.exit(main())
