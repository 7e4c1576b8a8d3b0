#!/usr/bin/env python3
"""fp32 attention accuracy: flashgrad's error against PyTorch's fp32 SDPA error, same metric.

The attention issue's accuracy rule (flash-attn's test rule): an fp32 kernel's error against
an fp64 reference may be at most 2x the error of PyTorch's fp32 SDPA against the same
reference. flashgrad's side comes from `flashgrad bench attention --dtype fp32 --json FILE`,
whose check measures the last head (b = B - 1, h = H - 1) of each configuration: the worst
relative row error ||x_i - ref_i|| / ||ref_i|| over 16 query rows spread over the sequence
(plus the first row of the last 64-row tile) of O, dQ, dK and dV. This script measures PyTorch
the same way, on the same shapes and the same distribution (standard normal q, k, v, dO; scale
1/sqrt(D)), over several seeds, since one head's worst row is itself a random number:

  python3 bench/fp32_accuracy.py --flashgrad-json fp32.json [--flashgrad-json fp32-simt.json]
      [--seeds 5] [--out-json acc.json] [--out-md acc.md]

Each flashgrad file is one kernel setting (its label: --label, in order, else the file name).
PyTorch backends: EFFICIENT_ATTENTION (fp32 on tensor cores) and MATH with TF32 off (plain
fp32 matrix products). The table gives each error and the ratio of flashgrad's error to the
median of PyTorch's efficient backend over the seeds (the rule: at most 2).
"""
import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def checked_rows(n):
    """The rows flashgrad's check compares (cli/bench.cpp, checked_rows)."""
    rows = {k * (n - 1) // 15 for k in range(16)}
    rows.add((n - 1) // 64 * 64)
    return sorted(rows)


def worst_row_error(x, ref, rows):
    """cli/bench.cpp's worst_row_error: x, ref [N, D] float64; rows whose reference norm is below
    1e-2 of the median norm are measured against that floor."""
    idx = torch.tensor(rows, device=ref.device)
    r, xr = ref[idx], x[idx]
    norms = r.norm(dim=1)
    floor = 1e-2 * norms.sort().values[len(rows) // 2]
    err = (xr - r).norm(dim=1) / torch.clamp(norms, min=max(float(floor), 1e-300))
    return float(err.max())


def head_errors(B, N, H, D, causal, seed, backend, device):
    """Errors of PyTorch's fp32 SDPA (backend) on head (B-1, H-1) against fp64 autograd."""
    g = torch.Generator(device=device).manual_seed(seed)
    shape = (B, N, H, D)  # flashgrad's layout; SDPA gets [B, H, N, D] views
    q, k, v, do = (torch.randn(shape, generator=g, device=device) for _ in range(4))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    with sdpa_kernel([backend]):
        out = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in leaves),
                                             is_causal=causal)
    out.backward(do.transpose(1, 2))
    o32 = out.transpose(1, 2)[B - 1, :, H - 1].double()
    g32 = [t.grad[B - 1, :, H - 1].double() for t in leaves]
    # The fp64 reference of the one head, from the same fp32 inputs.
    h64 = [t[B - 1, :, H - 1].double().requires_grad_(True) for t in (q, k, v)]
    s = (h64[0] @ h64[1].T) / D ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(N, N, device=device, dtype=torch.bool).triu(1), float("-inf"))
    o64 = torch.softmax(s, dim=-1) @ h64[2]
    o64.backward(do[B - 1, :, H - 1].double())
    rows = checked_rows(N)
    errs = {"err_o": worst_row_error(o32, o64.detach(), rows)}
    for name, x, t in zip(("err_dq", "err_dk", "err_dv"), g32, h64):
        errs[name] = worst_row_error(x, t.grad, rows)
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flashgrad-json", action="append", default=[], required=True)
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out-json")
    ap.add_argument("--out-md")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    device = "cuda"
    runs = []
    for i, path in enumerate(a.flashgrad_json):
        with open(path) as f:
            j = json.load(f)
        if j.get("dtype") != "fp32":
            raise SystemExit(f"{path}: dtype {j.get('dtype')!r}, this script compares fp32 runs")
        label = a.label[i] if i < len(a.label) else os.path.basename(path)
        runs.append((label, j))
    fields = ("err_o", "err_dq", "err_dk", "err_dv")
    backends = {"efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    shapes = sorted({(r["B"], r["N"], r["H"], r["D"], r["causal"])
                     for _, j in runs for r in j["results"]})
    table = []
    for B, N, H, D, causal in shapes:
        torch_err = {}
        for bname, backend in backends.items():
            per_seed = [head_errors(B, N, H, D, causal, 1000 + s, backend, device)
                        for s in range(a.seeds)]
            torch_err[bname] = {f: [e[f] for e in per_seed] for f in fields}
        entry = {"B": B, "N": N, "H": H, "D": D, "causal": causal, "torch": torch_err,
                 "flashgrad": {}}
        for label, j in runs:
            for r in j["results"]:
                if (r["B"], r["N"], r["H"], r["D"], r["causal"]) == (B, N, H, D, causal):
                    entry["flashgrad"][label] = {f: r[f] for f in fields}
                    entry["flashgrad"][label]["path"] = r.get("path", "")
                    entry["flashgrad"][label]["fwd_ms"] = r.get("fwd_ms")
                    entry["flashgrad"][label]["fwdbwd_ms"] = r.get("fwdbwd_ms")
        table.append(entry)

    lines = ["| D | N | causal | source | O | dQ | dK | dV | O / efficient | dQ, dK, dV / efficient |",
             "| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for e in table:
        med = {f: statistics.median(e["torch"]["efficient"][f]) for f in fields}
        head = f"| {e['D']} | {e['N']} | {'yes' if e['causal'] else 'no'} "
        for bname in backends:
            t = e["torch"][bname]
            cells = " | ".join(f"{statistics.median(t[f]):.2e} ({min(t[f]):.1e}–{max(t[f]):.1e})"
                               for f in fields)
            lines.append(f"{head}| PyTorch {bname}, median of {a.seeds} seeds (range) | {cells} | | |")
        for label, r in e["flashgrad"].items():
            cells = " | ".join(f"{r[f]:.2e}" for f in fields)
            ratios = ", ".join(f"{r[f] / med[f]:.2f}" for f in fields[1:])
            lines.append(f"{head}| flashgrad {label} | {cells} | **{r['err_o'] / med['err_o']:.2f}** | {ratios} |")
    md = "\n".join(lines)
    print(md)
    if a.out_md:
        with open(a.out_md, "w") as f:
            f.write(md + "\n")
    if a.out_json:
        with open(a.out_json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "seeds": a.seeds, "rows": table}, f, indent=2)


if __name__ == "__main__":
    main()
