#!/usr/bin/env python3
"""flashgrad's attention TFLOP/s against PyTorch's scaled_dot_product_attention, same GPU, same run.

Reads the JSON files written by `flashgrad bench attention --json FILE` (one per dtype), times
torch.nn.functional.scaled_dot_product_attention on exactly the same configurations with the
FLASH_ATTENTION and CUDNN_ATTENTION backends (and EFFICIENT_ATTENTION for fp32, which the other
two do not support), and prints flashgrad / backend ratios for forward, backward and
forward + backward.

  python3 bench/compare_sdpa.py --flashgrad-json bf16.json [--flashgrad-json fp32.json] \
      [--out-json bench.json] [--out-md bench.md] [--seconds 0.5] [--reps 20]

Conventions match flashgrad's: inputs are [B, N, H, D] tensors of standard normal values,
passed to SDPA as [B, H, N, D] views (the layout FlashAttention reads natively), scale
1/sqrt(D), FLOPs forward 4*B*H*N^2*D (halved when causal), backward 2.5x, forward+backward
3.5x. Each measurement: warm-up, then batches of back-to-back calls between CUDA events (no
synchronisation inside a batch, so host dispatch is not charged to either side), median of
the per-call means.
Forward is timed under torch.no_grad(); backward is out.backward(dout, retain_graph=True) on
one recorded forward; forward+backward is both, with the gradients cleared each time.
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def time_ms(fn, seconds, reps, warmup=3):
    """Milliseconds per call of fn: the median over a few batches of the mean of one batch,
    where a batch runs fn back to back between two CUDA events with no synchronisation in
    between (as a training loop does). Host dispatch then overlaps the GPU's work and counts
    only where it cannot keep up, for PyTorch and for flashgrad alike (flashgrad bench
    attention times its kernels the same way)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def batch(iters):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / iters

    for _ in range(max(1, warmup)):
        fn()
    one = batch(1)
    batches = max(3, min(reps, 10))
    iters = max(2, min(1000, int(seconds * 1000.0 / batches / max(one, 1e-3))))
    return statistics.median(batch(iters) for _ in range(batches))


def bench_sdpa(backend, dtype, B, N, H, D, causal, seconds, reps):
    g = torch.Generator(device="cuda").manual_seed(B * 1000003 + N * 31 + D)
    shape = (B, N, H, D)
    q, k, v, dout = (torch.randn(shape, device="cuda", dtype=dtype, generator=g) for _ in range(4))
    q, k, v = (x.transpose(1, 2).detach().requires_grad_(True) for x in (q, k, v))
    dout = dout.transpose(1, 2)
    scale = 1.0 / math.sqrt(D)
    with sdpa_kernel([backend]):
        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

        fwd_ms = time_ms(fwd, seconds, reps)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

        def bwd():
            q.grad = k.grad = v.grad = None
            out.backward(dout, retain_graph=True)

        bwd_ms = time_ms(bwd, seconds, reps)

        def fwdbwd():
            q.grad = k.grad = v.grad = None
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
            o.backward(dout)

        fwdbwd_ms = time_ms(fwdbwd, seconds, reps)
    del out
    return fwd_ms, bwd_ms, fwdbwd_ms


def flops(B, N, H, D, causal):
    f = 4.0 * B * H * N * N * D * (0.5 if causal else 1.0)
    return f, 2.5 * f, 3.5 * f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flashgrad-json", action="append", default=[], required=True,
                    help="output of `flashgrad bench attention --json` (repeatable)")
    ap.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    ap.add_argument("--reps", type=int, default=20, help="at most this many timed repetitions")
    ap.add_argument("--out-json", help="write flashgrad + SDPA numbers and ratios here")
    ap.add_argument("--out-md", help="write the comparison table (markdown) here")
    args = ap.parse_args()

    if not torch.cuda.is_available():
        sys.exit("compare_sdpa: no CUDA device visible to PyTorch")
    rows = []
    for path in args.flashgrad_json:
        with open(path) as f:
            fg = json.load(f)
        dtype_name = fg["dtype"]
        dtype = DTYPES[dtype_name]
        backends = ([("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
                    if dtype != torch.float32 else [("efficient", SDPBackend.EFFICIENT_ATTENTION)])
        for r in fg["results"]:
            B, N, H, D, causal = r["B"], r["N"], r["H"], r["D"], r["causal"]
            ff, fb, ffb = flops(B, N, H, D, causal)
            row = {"dtype": dtype_name, "D": D, "causal": causal, "N": N, "B": B, "H": H,
                   "flashgrad": {k: r[k] for k in ("fwd_ms", "bwd_ms", "fwdbwd_ms", "fwd_tflops",
                                                    "bwd_tflops", "fwdbwd_tflops", "check_ok", "path")}}
            for name, backend in backends:
                try:
                    t = bench_sdpa(backend, dtype, B, N, H, D, causal, args.seconds, args.reps)
                    row[name] = {"fwd_ms": t[0], "bwd_ms": t[1], "fwdbwd_ms": t[2],
                                 "fwd_tflops": ff / t[0] / 1e9, "bwd_tflops": fb / t[1] / 1e9,
                                 "fwdbwd_tflops": ffb / t[2] / 1e9}
                    for key in ("fwd", "bwd", "fwdbwd"):
                        row[name]["ratio_" + key] = row["flashgrad"][key + "_tflops"] / row[name][key + "_tflops"]
                except RuntimeError as e:  # backend not available for this shape / build
                    row[name] = {"error": str(e).splitlines()[0][:120]}
                torch.cuda.empty_cache()
            rows.append(row)
            print_row(row, backends, header=len(rows) == 1)
            sys.stdout.flush()

    table = markdown(rows, torch.cuda.get_device_name())
    print("\n" + table)
    if args.out_md:
        with open(args.out_md, "w") as f:
            f.write(table + "\n")
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "rows": rows}, f, indent=1)


def print_row(row, backends, header):
    if header:
        print("progress: dtype D causal N | flashgrad fwd/bwd/f+b TFLOP/s | backend fwd/f+b (ratio)")
    fgr = row["flashgrad"]
    parts = [f"{row['dtype']} D{row['D']} {'causal' if row['causal'] else 'full'} N{row['N']} | "
             f"{fgr['fwd_tflops']:.1f}/{fgr['bwd_tflops']:.1f}/{fgr['fwdbwd_tflops']:.1f}"]
    for name, _ in backends:
        b = row[name]
        if "error" in b:
            parts.append(f"{name}: n/a")
        else:
            parts.append(f"{name} {b['fwd_tflops']:.1f}/{b['fwdbwd_tflops']:.1f} "
                         f"({b['ratio_fwd']:.2f}x/{b['ratio_fwdbwd']:.2f}x)")
    print(" | ".join(parts))


def markdown(rows, device):
    lines = [f"Attention TFLOP/s on {device} (flash-attn FLOP convention; ratio = flashgrad / backend)", "",
             "| dtype | D | causal | N | B×H | flashgrad fwd | bwd | fwd+bwd | check | backend | fwd | bwd | fwd+bwd | ratio fwd | ratio bwd | ratio fwd+bwd |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fgr = r["flashgrad"]
        for name in ("flash", "cudnn", "efficient"):
            if name not in r:
                continue
            b = r[name]
            head = (f"| {r['dtype']} | {r['D']} | {'yes' if r['causal'] else 'no'} | {r['N']} | "
                    f"{r['B']}×{r['H']} | {fgr['fwd_tflops']:.1f} ({fgr['path']}) | {fgr['bwd_tflops']:.1f} | "
                    f"{fgr['fwdbwd_tflops']:.1f} | {'ok' if fgr['check_ok'] else 'FAIL'} | {name} | ")
            if "error" in b:
                lines.append(head + "n/a | n/a | n/a | | | |")
            else:
                lines.append(head + f"{b['fwd_tflops']:.1f} | {b['bwd_tflops']:.1f} | {b['fwdbwd_tflops']:.1f} | "
                             f"{b['ratio_fwd']:.2f} | {b['ratio_bwd']:.2f} | {b['ratio_fwdbwd']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
