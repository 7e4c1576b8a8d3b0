#!/usr/bin/env python3
"""Draws the loss curve of a `flashgrad train` log as an SVG (no dependencies).

    python3 bench/plot_loss.py bench/train-small/train-small.log bench/train-small/loss.svg
"""
import re
import sys


def main(log_path, svg_path):
    train, val = [], []
    for line in open(log_path, encoding="utf-8"):
        m = re.match(r"step\s+(\d+)/\d+ \| loss ([\d.]+)", line)
        if m:
            train.append((int(m.group(1)), float(m.group(2))))
        m = re.match(r"eval step (\d+): train loss ([\d.]+) \| val loss ([\d.]+)", line)
        if m:
            val.append((int(m.group(1)), float(m.group(3))))
    if not train:
        sys.exit(f"no progress lines in {log_path}")
    W, H, L, R, T, B = 800, 420, 70, 210, 40, 50
    xmax = max(s for s, _ in train)
    ymin, ymax = 1.0, 3.0
    sx = lambda s: L + (W - L - R) * s / xmax
    sy = lambda v: T + (H - T - B) * (ymax - min(max(v, ymin), ymax)) / (ymax - ymin)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="15" font-weight="bold">flashgrad train --preset small: loss per step</text>']
    for k in range(5):
        v = ymin + k * (ymax - ymin) / 4
        out.append(f'<line x1="{L}" x2="{W-R}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L-8}" y="{sy(v)+4:.1f}" text-anchor="end">{v:.1f}</text>')
    for k in range(6):
        s = xmax * k / 5
        out.append(f'<text x="{sx(s):.1f}" y="{H-B+18}" text-anchor="middle">{int(s)}</text>')
    out.append(f'<text x="{(L+W-R)/2}" y="{H-10}" text-anchor="middle">step</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W-L-R}" height="{H-T-B}" fill="none" stroke="#444"/>')
    for pts, colour, name in ((train, "#1f77b4", "train (batch)"), (val, "#d62728", "val (eval)")):
        if pts:
            path = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
    best = min(val, key=lambda p: p[1]) if val else None
    y = T + 10
    for colour, name in (("#1f77b4", "train loss (progress lines)"), ("#d62728", "val loss (evals)")):
        out.append(f'<line x1="{W-R+12}" x2="{W-R+32}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{W-R+36}" y="{y+4}" font-size="11">{name}</text>')
        y += 20
    if best:
        out.append(f'<text x="{W-R+12}" y="{y+10}" font-size="11">best val {best[1]:.4f}</text>')
        out.append(f'<text x="{W-R+12}" y="{y+26}" font-size="11">at step {best[0]}</text>')
    out.append("</svg>")
    open(svg_path, "w", encoding="utf-8").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
