#!/usr/bin/env python3
"""Draws benchmark results stored as JSON in bench/ as SVG charts (python3 standard library only).

    python3 bench/plot_results.py attention [--json F] [--out F]        # TFLOP/s beside PyTorch SDPA
    python3 bench/plot_results.py decode [--json F [F ...]] [--out F]   # decode attention GB/s
    python3 bench/plot_results.py train [--json F [F ...]] [--out F]    # tokens/s beside PyTorch
    python3 bench/plot_results.py all                                   # the three, default inputs

attention: a panel per (head dim D, causal), TFLOP/s against sequence length N, flashgrad and SDPA
  flash forward (solid) and backward (dashed), other SDPA backends (cuDNN, ...) thin and light.
decode: GB/s against cache length L (graphed timing where the record has it), peak and 70% of it.
train: flashgrad, PyTorch eager and torch.compile tokens/s per config, normalised to torch.compile,
  from the newest `compare-<config>-h100-call<X>-<date>.json` per config in bench/train-throughput/.
Without --json each reads the newest H100 records (named in its --help); charts go to
bench/charts/. A missing or malformed input exits non-zero with a message naming the file.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "bench/charts"
ATTENTION_JSON = ROOT / "bench/attention/sdpa-callx-h100-2026-12-08.json"
DECODE_JSONS = [  # (file, label); the first two are drawn strong, the rest thin and dashed
    (ROOT / "bench/decode/dattn-mha-final-calll-h100-2026-12-07.json", "final kernels (call l)"),
    (ROOT / "bench/decode/dattn-gqa-auto-callj-h100-2026-12-07.json", "default dispatch (call j)"),
    (ROOT / "bench/decode/dattn-mha-split-callj-h100-2026-12-07.json", "split + combine pair (call j)"),
]
TRAIN_DIR, TRAIN_DATE = ROOT / "bench/train-throughput", "2026-12-08"
DEFAULT_OUT = {"attention": "attention-h100.svg", "decode": "decode-bandwidth-h100.svg",
               "train": "train-throughput-h100.svg"}
PEAK_GB_PER_S = {"H100": 3350, "H200": 4800}
BACKENDS = {"flashgrad": ("flashgrad", "#1f77b4"), "flash": ("SDPA flash", "#d62728"),  # name, colour
            "cudnn": ("SDPA cuDNN", "#7f7f7f"), "efficient": ("SDPA efficient", "#9467bd")}


def fail(message):
    sys.exit(f"plot_results.py: {message}")


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (OSError, ValueError) as e:
        fail(f"{path}: cannot read JSON ({e})")


def rel(path):
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def short_device(name):
    m = re.search(r"[A-Z]\d{2,3}", str(name))
    return m.group(0) if m else str(name)


def call_and_date(path):
    """('q', '2026-12-07') from a name like sdpa-tma-pp-callq-h100-2026-12-07.json."""
    call, date = re.search(r"call([a-z]+\d*)-", Path(path).name), re.search(r"\d{4}-\d\d-\d\d", Path(path).name)
    return (call.group(1) if call else "?"), (date.group(0) if date else "?")


def k_label(n):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def nice_ticks(vmax, count=7):
    """0, step, ... up to the first tick at or above vmax; step 1, 2, 2.5 or 5 times a power of 10."""
    base = 10 ** math.floor(math.log10(vmax / count))
    step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= vmax / count)
    return [i * step for i in range(math.ceil(vmax / step - 1e-9) + 1)]


class Svg:
    """SVG elements in plot_loss.py's style (white page, sans-serif 12 px), written out by save()."""

    def __init__(self, width, height):
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                      f'font-family="sans-serif" font-size="12">',
                      f'<rect width="{width}" height="{height}" fill="white"/>']

    def text(self, x, y, s, size=None, anchor="start", bold=False, fill=None, rotate=False, halo=False):
        attrs = "".join(a for on, a in (
            (size, f' font-size="{size}"'), (anchor != "start", f' text-anchor="{anchor}"'),
            (bold, ' font-weight="bold"'), (fill, f' fill="{fill}"'),
            (rotate, f' transform="rotate(-90 {x:.1f} {y:.1f})"'),
            (halo, ' stroke="white" stroke-width="3" paint-order="stroke"')) if on)  # halo: legible over lines
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}"{attrs}>{escape(str(s))}</text>')

    def line(self, x1, y1, x2, y2, colour, width=1.0, dash=None, opacity=1.0):
        self.parts.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{colour}" '
                          f'stroke-width="{width}"{stroke_extras(dash, opacity)}/>')

    def polyline(self, points, colour, width=1.8, dash=None, opacity=1.0):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{width}"'
                          f'{stroke_extras(dash, opacity)}/>')

    def circle(self, x, y, r, colour, opacity=1.0):
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}" fill-opacity="{opacity}"/>')

    def rect(self, x, y, w, h, fill="none", stroke=None):
        stroke = f' stroke="{stroke}"' if stroke else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"{stroke}/>')

    def heading(self, title, subtitles, x=70):
        self.text(x, 22, title, size=15, bold=True)
        for i, line in enumerate(subtitles):
            self.text(x, 40 + 15 * i, line, size=11, fill="#444")

    def save(self, path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.parts + ["</svg>"]) + "\n", encoding="utf-8")
        print(f"wrote {rel(path)}")


def stroke_extras(dash, opacity):
    return (f' stroke-dasharray="{dash}"' if dash else "") + (f' stroke-opacity="{opacity}"' if opacity < 1 else "")


class Axes:
    """One plot box: maps data to pixels (x linear or log2, y linear) and draws grid, ticks and lines."""

    def __init__(self, svg, left, top, width, height, xlim, ylim, log2x=False):
        self.svg, self.left, self.top, self.width, self.height = svg, left, top, width, height
        self.xlim, self.ylim, self.log2x = xlim, ylim, log2x

    def sx(self, x):
        f = math.log2 if self.log2x else float
        return self.left + self.width * (f(x) - f(self.xlim[0])) / (f(self.xlim[1]) - f(self.xlim[0]))

    def sy(self, y):
        lo, hi = self.ylim
        return self.top + self.height * (hi - min(max(y, lo), hi)) / (hi - lo)

    def frame(self, xticks, yticks, xlabel, ylabel, title=None, xfmt=str, yfmt="{:g}".format):
        s, bottom = self.svg, self.top + self.height
        for v in yticks:
            s.line(self.left, self.sy(v), self.left + self.width, self.sy(v), "#ddd")
            s.text(self.left - 6, self.sy(v) + 4, yfmt(v), anchor="end")
        for v in xticks:
            s.line(self.sx(v), self.top, self.sx(v), bottom, "#eee")
            s.text(self.sx(v), bottom + 16, xfmt(v), anchor="middle")
        s.rect(self.left, self.top, self.width, self.height, stroke="#444")
        if xlabel:
            s.text(self.left + self.width / 2, bottom + 34, xlabel, anchor="middle")
        s.text(self.left - 46, self.top + self.height / 2, ylabel, anchor="middle", rotate=True)
        if title:
            s.text(self.left + self.width / 2, self.top - 7, title, anchor="middle", bold=True)

    def series(self, points, style):
        pts = [(self.sx(x), self.sy(y)) for x, y in points]
        self.svg.polyline(pts, style["colour"], style.get("width", 1.8), style.get("dash"), style.get("opacity", 1))
        for x, y in pts if style.get("marker", True) else []:
            self.svg.circle(x, y, 2.6, style["colour"], style.get("opacity", 1))

    def hline(self, y, style, label="", below=False):
        self.svg.line(self.left, self.sy(y), self.left + self.width, self.sy(y), style["colour"],
                      style.get("width", 1.2), style.get("dash"))
        self.svg.text(self.left + 6, self.sy(y) + (14 if below else -5), label, size=11, fill=style["colour"])


def legend(svg, x, y, entries, bar=False):
    """entries: (label, style): a key line (a swatch when bar), the label; its further lines smaller, under it."""
    for label, style in entries:
        if bar:
            svg.rect(x, y - 6, 20, 12, fill=style["colour"])
        else:
            svg.line(x, y, x + 24, y, style["colour"], style.get("width", 1.8), style.get("dash"),
                     style.get("opacity", 1))
        first, *rest = label.split("\n")
        svg.text(x + 30, y + 4, first, size=11)
        for i, line in enumerate(rest, 1):
            svg.text(x + 30, y + 4 + 15 * i, line, size=10, fill="#555")
        y += 22 + 15 * len(rest)


# ---- 1. attention TFLOP/s beside SDPA ----------------------------------------------------------

def attention_style(backend, direction):
    main = backend in ("flashgrad", "flash")
    return {"colour": BACKENDS.get(backend, (backend, "#bcbd22"))[1], "dash": None if direction == "fwd" else "6,3",
            "width": 1.8 if main else 1.1, "opacity": 1.0 if main else 0.55, "marker": main}


def plot_attention(json_path, out_path):
    data = load_json(json_path)
    try:
        rows, device = data["rows"], short_device(data["device"])
        others = {k for r in rows for k, v in r.items() if isinstance(v, dict) and "fwd_tflops" in v} - {"flashgrad"}
        backends = ["flashgrad"] + sorted(others, key=lambda b: (b != "flash", b))  # flash first
        panels, ns = sorted({(r["D"], r["causal"]) for r in rows}), sorted({r["N"] for r in rows})
        curves = {(p, b, d): [(r["N"], float(r[b][f"{d}_tflops"])) for r in sorted(rows, key=lambda r: r["N"])
                              if (r["D"], r["causal"]) == p and b in r]
                  for p in panels for b in backends for d in ("fwd", "bwd")}
        tokens, heads = {r["B"] * r["N"] for r in rows}, {r["D"]: r["H"] for r in rows}
        dtype = "/".join(sorted({r["dtype"] for r in rows}))
    except (KeyError, TypeError, ValueError) as e:
        fail(f"{json_path}: malformed compare_sdpa record ({e!r})")
    call, date = call_and_date(json_path)
    cols, (pw, ph, left, top, gx, gy) = 2, (330, 230, 80, 100, 70, 80)
    svg = Svg(left + cols * pw + (cols - 1) * gx + 240, top + math.ceil(len(panels) / cols) * (ph + gy))
    svg.heading(f"Attention speed beside PyTorch SDPA ({device}, {dtype}, call {call} {date})",
                [f"TFLOP/s (flash-attn FLOP convention), higher is better; PyTorch {data.get('torch', '?')}; "
                 + (f"B \u00d7 N = {min(tokens)} tokens per point; " if len(tokens) == 1 else "")
                 + "heads " + ", ".join(f"{h} at D {d}" for d, h in sorted(heads.items())),
                 f"source: {rel(json_path)}"])
    yticks = nice_ticks(max(v for c in curves.values() for _, v in c))
    for i, (d, causal) in enumerate(panels):
        ax = Axes(svg, left + (i % cols) * (pw + gx), top + (i // cols) * (ph + gy), pw, ph,
                  (ns[0], ns[-1]), (0, yticks[-1]), log2x=True)
        ax.frame(ns, yticks, "sequence length N", "TFLOP/s", f"D {d}, {'causal' if causal else 'non-causal'}",
                 xfmt=k_label)
        for b in reversed(backends):  # flashgrad's lines last, on top
            for direction in ("bwd", "fwd"):
                if curves[(d, causal), b, direction]:
                    ax.series(curves[(d, causal), b, direction], attention_style(b, direction))
    legend(svg, left + cols * pw + (cols - 1) * gx + 20, top + 10,
           [(f"{BACKENDS.get(b, (b,))[0]} {'forward' if d == 'fwd' else 'backward'}", attention_style(b, d))
            for b in backends for d in ("fwd", "bwd")])
    svg.save(out_path)
    return curves


# ---- 2. decode attention bandwidth -------------------------------------------------------------

def decode_series(path, label):
    """One `bench decode-attention` record: its shape, points [(L, GB/s)], graphed or eager timing."""
    rec = load_json(path)
    try:
        results = sorted(rec["results"], key=lambda r: r["cache_len"])
        timing = "graphed" if all("graph_gb_per_s" in r for r in results) else "eager"
        key = "graph_gb_per_s" if timing == "graphed" else "gb_per_s"
        heads = f"{rec['heads']}" + (f"/{rec['kv_heads']}" if rec["kv_heads"] != rec["heads"] else "")
        return {"path": path, "label": label, "timing": timing, "dtype": rec["dtype"],
                "shape": f"B {rec['batch']}, {heads} heads, D {rec['head_dim']}",
                "device": short_device(rec["device"]), "points": [(r["cache_len"], float(r[key])) for r in results]}
    except (KeyError, TypeError, ValueError) as e:
        fail(f"{path}: malformed decode-attention record ({e!r})")


def plot_decode(sources, out_path):
    series = [decode_series(path, label) for path, label in sources]
    devices = sorted({s["device"] for s in series})
    if len(devices) != 1 or devices[0] not in PEAK_GB_PER_S:
        fail(f"decode: want records of one device with a known peak bandwidth, got {devices}")
    peak, lens = PEAK_GB_PER_S[devices[0]], sorted({x for s in series for x, _ in s["points"]})
    timings = sorted({s["timing"] for s in series})
    left, top, w, h = 80, 95, 560, 320
    svg = Svg(left + w + 330, top + h + 60)
    svg.heading(f"Decode attention bandwidth ({devices[0]}, {'/'.join(sorted({s['dtype'] for s in series}))}, "
                f"{', '.join(sorted({call_and_date(s['path'])[1] for s in series}))})",
                [f"GB/s = K and V bytes read / time, {' and '.join(timings)} timing"
                 + (" (32 calls replayed in one CUDA graph)" if timings == ["graphed"] else "")
                 + "; one new token per sequence against L cached keys",
                 "sources: " + ", ".join(Path(s["path"]).name for s in series)])
    yticks = nice_ticks(peak)
    ax = Axes(svg, left, top, w, h, (lens[0], lens[-1]), (0, yticks[-1]), log2x=True)
    ax.frame(lens, yticks, "cache length L (keys)", "GB/s", xfmt=k_label)
    ax.hline(peak, {"colour": "#444"}, f"{devices[0]} peak {peak} GB/s", below=True)
    ax.hline(0.7 * peak, {"colour": "#d62728", "dash": "6,3"}, f"goal 70% ({0.7 * peak:.0f} GB/s)")
    entries = []
    for i, s in enumerate(series):
        faded = i >= 2
        style = {"colour": ["#1f77b4", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"][i % 5], "marker": not faded,
                 "dash": "5,3" if faded else None, "opacity": 0.5 if faded else 1.0, "width": 1.2 if faded else 1.8}
        ax.series(s["points"], style)
        for x, y in s["points"] if not faded else []:  # values: below right of the first, above left of the second
            svg.text(ax.sx(x) + (5 if i == 0 else -5), ax.sy(y) + (14 if i == 0 else -7), f"{y:.0f}", size=10,
                     anchor="start" if i == 0 else "end", fill=style["colour"], halo=True)
        last_len, last = s["points"][-1]
        entries.append((f"{s['shape']}\n{s['label']}\n{k_label(last_len)}: {100 * last / peak:.0f}% of peak", style))
    legend(svg, left + w + 40, top + 10, entries)
    svg.save(out_path)
    return series


# ---- 3. training throughput beside PyTorch -----------------------------------------------------

TRAIN_NAME = re.compile(r"^compare-(?P<config>.+?)-(?P<device>h\d00)-(?:call(?P<call>[a-z]+)(?P<rerun>\d*)-)?"
                        r"(?P<date>\d{4}-\d\d-\d\d)")


def newest_train_records(directory, device="h100", date=TRAIN_DATE):
    """The newest call's file per config (q2 after q after p), and configs of that date on other devices only."""
    newest, all_configs = {}, set()
    for path in sorted(Path(directory).glob("compare-*.json")):
        m = TRAIN_NAME.match(path.name)
        if m and m["date"] == date:
            all_configs.add(m["config"])
            rank = (len(m["call"] or ""), m["call"] or "", int(m["rerun"] or 0))
            if m["device"] == device and m["call"] and rank > newest.get(m["config"], ((),))[0]:
                newest[m["config"]] = (rank, path)
    if not newest:
        fail(f"{directory}: no compare-<config>-{device}-call<X>-{date}.json records")
    return [p for _, p in newest.values()], sorted(all_configs - set(newest))


def train_bars(path):
    rec = load_json(path)
    try:
        modes, c = {p["mode"]: float(p["tokens_per_s"]) for p in rec["pytorch"]}, rec["config"]
        return {"preset": rec["preset"], "params": rec["flashgrad"]["parameters"], "path": path,
                "shape": f"{c['n_layer']}L \u00d7 {c['n_embd']}, ctx {c['block_size']}, B {c['batch']}",
                "tokens": {"flashgrad": float(rec["flashgrad"]["tokens_per_s"]), "PyTorch eager": modes["eager"],
                           "torch.compile": modes["compile"]}}
    except (KeyError, TypeError, ValueError) as e:
        fail(f"{path}: malformed compare_train record ({e!r})")


def tokens_label(v):
    return f"{v / 1e6:.2f}M tok/s" if v >= 1e6 else f"{v / 1e3:.1f}k tok/s"


def plot_train(paths, missing, out_path):
    groups = sorted((train_bars(p) for p in paths), key=lambda g: g["params"])
    for g in groups:
        print(f"train: {g['preset']} ({g['shape']}) from {rel(g['path'])}")
    names, colours = ["flashgrad", "PyTorch eager", "torch.compile"], ["#1f77b4", "#ff7f0e", "#2ca02c"]
    ratios = [[g["tokens"][n] / g["tokens"]["torch.compile"] for n in names] for g in groups]
    files = [Path(g["path"]).name for g in groups]
    devices = "/".join(sorted({m["device"].upper() for m in map(TRAIN_NAME.match, files) if m})) or "device ?"
    left, top, w, h, bar = 80, 100, 200 * len(groups), 320, 48
    svg = Svg(max(left + w + 200, 900), top + h + 80)
    svg.heading(f"Training throughput beside PyTorch ({devices}, bf16, "
                f"{', '.join(sorted({call_and_date(f)[1] for f in files}))})",
                ["tokens/s normalised to torch.compile = 1.0 (above: ratio; on the bar: tokens/s); newest call "
                 "per config" + (f"; no {devices} record for {', '.join(missing)}" if missing else ""),
                 "sources: " + ", ".join(files)])
    yticks = nice_ticks(max(max(r) for r in ratios) * 1.08, count=5)
    ax = Axes(svg, left, top, w, h, (0, len(groups)), (0, yticks[-1]))
    ax.frame([], yticks, None, "relative to torch.compile", yfmt="{:g}\u00d7".format)
    for i, g in enumerate(groups):
        centre = ax.sx(i + 0.5)
        for j, name in enumerate(names):
            x, top_y = centre + (j - 1.5) * bar, ax.sy(ratios[i][j])
            svg.rect(x + 2, top_y, bar - 4, ax.sy(0) - top_y, fill=colours[j])
            svg.text(x + bar / 2, top_y - 5, f"{ratios[i][j]:.2f}\u00d7", size=11, anchor="middle", bold=j == 0)
            svg.text(x + bar / 2 + 4, ax.sy(0) - 6, tokens_label(g["tokens"][name]), size=10, fill="white",
                     rotate=True)
        for k, (line, size, fill) in enumerate(((g["preset"], 12, None), (g["shape"], 10, None),
                                                (f"call {call_and_date(g['path'])[0]}", 10, "#666"))):
            svg.text(centre, ax.sy(0) + 18 + 15 * k, line, size=size, anchor="middle", bold=k == 0, fill=fill)
    ax.hline(1.0, {"colour": "#444", "dash": "4,3", "width": 1})
    legend(svg, left + w + 20, top + 10, [(n, {"colour": c}) for n, c in zip(names, colours)], bar=True)
    svg.save(out_path)
    return groups, ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="chart", required=True)
    for chart, what, default in (
            ("attention", "a compare_sdpa.py JSON record", rel(ATTENTION_JSON)),
            ("decode", "`flashgrad bench decode-attention` JSON records", ", ".join(rel(p) for p, _ in DECODE_JSONS)),
            ("train", "compare_train.py JSON records", "the newest H100 call per config in --dir of --date")):
        p = sub.add_parser(chart, help=f"chart of {what}")
        p.add_argument("--json", nargs=1 if chart == "attention" else "+", help=f"{what} (default: {default})")
        p.add_argument("--out", help=f"SVG to write (default: bench/charts/{DEFAULT_OUT[chart]})")
    sub.choices["train"].add_argument("--dir", default=TRAIN_DIR, help="where to look without --json")
    sub.choices["train"].add_argument("--date", default=TRAIN_DATE, help="whose records to take without --json")
    sub.add_parser("all", help="the three charts from the default inputs into bench/charts/")
    ap.set_defaults(json=None, out=None, dir=TRAIN_DIR, date=TRAIN_DATE)
    args = ap.parse_args(argv)
    for chart in ("attention", "decode", "train") if args.chart == "all" else (args.chart,):
        out_path = args.out or CHARTS / DEFAULT_OUT[chart]
        if chart == "attention":
            plot_attention(args.json[0] if args.json else ATTENTION_JSON, out_path)
        elif chart == "decode":
            plot_decode([(Path(p), Path(p).stem) for p in args.json] if args.json else DECODE_JSONS, out_path)
        else:
            paths, missing = (args.json, []) if args.json else newest_train_records(args.dir, date=args.date)
            plot_train(paths, missing, out_path)


if __name__ == "__main__":
    main()
