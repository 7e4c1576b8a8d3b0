#!/usr/bin/env python3
"""Tokens/s of greedy generation with a KV cache in PyTorch, beside `flashgrad bench decode`.

Builds the GPT that `flashgrad bench decode` measures (GPT-2 style: learned token and position
embeddings, pre-LN blocks, fused c_attn C -> 3C, causal attention with scale 1/sqrt(D), GELU
(tanh) MLP of width 4C, biases, LayerNorm eps 1e-5, ln_f, logits tied to wte) with random
weights (normal, std 0.02), generates with it as flashgrad does, and prints decode and prefill
tokens/s beside flashgrad's, with the ratio flashgrad / best PyTorch mode.

  python3 bench/compare_sample.py [--flashgrad-json decode.json ...] [--modes eager,graph,compile] \
      [--batch 1,8,64] [--tokens 1000] [--max-seconds 60] [--out-json bench.json] [--out-md bench.md]

Architecture, dtype, batches, prompt length and tokens default to the first --flashgrad-json
file's, else to flashgrad's defaults (12 layers, width 768, 12 heads, context 1024, vocabulary
50304, bf16, batches 1,8,64, prompts of 16 tokens, 1000 new tokens).

Protocol, flashgrad's generate_batch, greedy: B random prompts are prefilled in one forward
(flashgrad prefills row by row) into a preallocated KV cache, [B, n_head, block_size, D] per
layer; the argmax of its last logits is the first new token, and each further one is a decode
step for the whole batch (decode steps = tokens - 1). The host reads each step's tokens
(`.tolist()`), as a sampler streaming them must (flashgrad reads the logits and picks on the
host). A window that would exceed block_size restarts from its last block_size // 2 tokens,
prefilled again and counted as prefill. An untimed 8-token generation comes first; each step
is timed on the host between synchronisations, launch overhead included, as flashgrad does.
Decode tokens/s = B * decode steps / their seconds; prefill likewise. Under inference_mode.

Modes: "eager" is a plain loop whose step attends to cache[:, :, :pos+1]. "graph" captures the
step (argmax included) in CUDA graphs with static token and position tensors; "compile" wraps
it in torch.compile(mode="reduce-overhead"), fullgraph if that compiles. Their shapes must not
move with the position: the step writes k and v by index_copy_ at a position tensor and attends
over a fixed span of the cache with the keys past the position masked, the span being the
smallest of --span-buckets sizes block_size / 2^k that holds it (one graph, or compilation, per
span; 1 = always the whole cache). A failing mode records its error and the others go on;
--max-seconds shortens a (mode, batch) run whose warm-up predicts more, recording the tokens.
"""
import argparse
import bisect
import datetime
import gc
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
ARCH_DEFAULTS = {"n_layer": 12, "n_embd": 768, "n_head": 12, "block_size": 1024, "vocab": 50304,
                 "dtype": "bf16", "prompt_len": 16, "tokens": 1000, "batch": [1, 8, 64]}


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1, self.ln_2 = nn.LayerNorm(C, eps=1e-5), nn.LayerNorm(C, eps=1e-5)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x, kc, vc, pos=None, span=0, mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(B, T, 3, self.H, C // self.H).permute(2, 0, 3, 1, 4)
        if pos is None:  # prefill: T tokens at positions 0..T-1
            kc[:, :, :T] = k
            vc[:, :, :T] = v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # decode: one token at position pos, attending to the first `span` cached keys
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            y = F.scaled_dot_product_attention(q, kc[:, :, :span], vc[:, :, :span], attn_mask=mask)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.n_head, self.block_size = a.n_head, a.block_size
        self.wte, self.wpe = nn.Embedding(a.vocab, a.n_embd), nn.Embedding(a.block_size, a.n_embd)
        self.blocks = nn.ModuleList(Block(a.n_embd, a.n_head) for _ in range(a.n_layer))
        self.ln_f = nn.LayerNorm(a.n_embd, eps=1e-5)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def alloc_cache(self, B):
        w = self.wte.weight
        shape = (B, self.n_head, self.block_size, w.shape[1] // self.n_head)
        self.kc = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in self.blocks]
        self.vc = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in self.blocks]
        self.pos = torch.zeros(1, dtype=torch.long, device=w.device)
        self.arange = torch.arange(self.block_size, device=w.device)

    def next_tokens(self, x):  # greedy: argmax of the last position's logits (tied head)
        return F.linear(self.ln_f(x), self.wte.weight).argmax(-1)

    def prefill(self, idx):  # idx [B, T]; fills the cache from position 0; returns [B] tokens
        x = self.wte(idx) + self.wpe.weight[: idx.shape[1]]
        for blk, kc, vc in zip(self.blocks, self.kc, self.vc):
            x = blk(x, kc, vc)
        return self.next_tokens(x[:, -1])

    def step(self, tok, pos, span, masked):  # tok [B], pos [1] -> the next [B] tokens
        x = (self.wte(tok) + self.wpe(pos)).unsqueeze(1)
        mask = (self.arange[:span] <= pos).view(1, 1, 1, span) if masked else None
        for blk, kc, vc in zip(self.blocks, self.kc, self.vc):
            x = blk(x, kc, vc, pos, span, mask)
        return self.next_tokens(x[:, 0])


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def short(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def make_stepper(mode, model, B, spans):
    """Returns step(cur, p) -> the next [B] tokens after tokens cur (a device tensor) at
    position p, and a dict of notes on how it was set up."""
    pos = model.pos
    if mode == "eager":
        def step(cur, p):
            pos.fill_(p)
            return model.step(cur, pos, p + 1, False)
        return step, {}
    if mode not in ("graph", "compile"):
        raise ValueError(f"unknown mode {mode!r}")
    tok_in = torch.zeros(B, dtype=torch.long, device=pos.device)  # static input
    run, notes = (graph_steps if mode == "graph" else compiled_steps)(model, tok_in, spans)

    def step(cur, p):
        tok_in.copy_(cur)
        pos.fill_(p)
        return run(spans[bisect.bisect_right(spans, p)])  # the smallest span > p
    return step, notes


def graph_steps(model, tok_in, spans):
    """One CUDA graph per span, each warmed up on a side stream, then captured."""
    if model.pos.device.type != "cuda":
        raise RuntimeError("graph mode needs CUDA")
    graphs = {}
    for span in spans:  # cache rows written here are rewritten before any step reads them
        model.pos.fill_(span - 1)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                model.step(tok_in, model.pos, span, True)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = model.step(tok_in, model.pos, span, True)
        graphs[span] = (g, out)

    def run(span):
        g, out = graphs[span]
        g.replay()
        return out
    return run, {}


def compiled_steps(model, tok_in, spans):
    """torch.compile(mode="reduce-overhead"): one compilation and CUDA graph per span."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    cfg = torch._dynamo.config
    limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, limit, max(getattr(cfg, limit), 2 * len(spans)))
    for t in model.kc + model.vc + [model.pos, tok_in]:  # mutated or fixed: static addresses
        torch._dynamo.mark_static_address(t)
    notes = {}
    for fullgraph in (True, False):
        torch._dynamo.reset()
        skips = counters["inductor"]["cudagraph_skips"]
        fn = torch.compile(lambda t, p, s: model.step(t, p, s, True), mode="reduce-overhead",
                           fullgraph=fullgraph, dynamic=False)
        try:
            for span in spans:  # compile and record every span before timing
                model.pos.fill_(span - 1)
                for _ in range(3):
                    torch.compiler.cudagraph_mark_step_begin()
                    fn(tok_in, model.pos, span)
            break
        except Exception as e:  # noqa: BLE001
            if not fullgraph:
                raise
            notes["fullgraph_error"] = short(e)
    notes["fullgraph"] = fullgraph
    notes["cudagraph_skips"] = counters["inductor"]["cudagraph_skips"] - skips  # 0: all graphed

    def run(span):
        torch.compiler.cudagraph_mark_step_begin()
        return fn(tok_in, model.pos, span)
    return run, notes


def generate(model, step, prompts, ntok, deadline=None):
    """flashgrad's generate_batch, greedy: returns its statistics."""
    dev, (B, _) = prompts.device, prompts.shape
    ctx = model.block_size
    keep = max(1, ctx // 2)
    window = prompts[:, -ctx:].T.tolist()  # one list of B tokens per position
    sync(dev)
    t0 = time.perf_counter()
    cur = model.prefill(prompts[:, -ctx:])
    toks = cur.tolist()  # the host reads the chosen tokens, as a sampler streaming them does
    sync(dev)
    st = {"prefill_tokens": B * len(window), "prefill_s": time.perf_counter() - t0,
          "decode_tokens": 0, "decode_s": 0.0, "window_restarts": 0, "tokens": 1, "step_s": []}
    for _ in range(1, ntok):
        if deadline is not None and time.perf_counter() > deadline:
            break
        window.append(toks)
        restart = len(window) > ctx
        if restart:
            window = window[-keep:]
            st["window_restarts"] += B
        sync(dev)
        t0 = time.perf_counter()
        if restart:
            cur = model.prefill(torch.tensor(window, device=dev).T.contiguous())
        else:
            cur = step(cur, len(window) - 1)
        toks = cur.tolist()
        sync(dev)
        dt = time.perf_counter() - t0
        kind = "prefill" if restart else "decode"
        st[kind + "_tokens"] += B * len(window) if restart else B
        st[kind + "_s"] += dt
        st["step_s"] += [] if restart else [dt]
        st["tokens"] += 1
    return st


def bench_one(model, mode, prompts, a):
    B = prompts.shape[0]
    model.alloc_cache(B)
    t0 = time.perf_counter()
    spans = sorted({max(1, model.block_size >> k) for k in range(a.span_buckets)})
    step, rec = make_stepper(mode, model, B, spans)
    rec["spans"] = spans if mode != "eager" else None
    rec["setup_s"] = time.perf_counter() - t0
    warm = generate(model, step, prompts, min(8, a.tokens))
    ntok = a.tokens
    per_step = statistics.median(warm["step_s"][-4:]) if warm["step_s"] else 0.0
    if per_step > 0 and per_step * (ntok - 1) + warm["prefill_s"] > a.max_seconds:
        ntok = max(2, 1 + int(a.max_seconds / per_step))
    st = generate(model, step, prompts, ntok, deadline=time.perf_counter() + 2 * a.max_seconds)
    steps = st["decode_tokens"] // B
    rec.update({"tokens_requested": a.tokens, "tokens": st["tokens"], "decode_steps": steps,
                "decode_tokens": st["decode_tokens"], "prefill_tokens": st["prefill_tokens"],
                "window_restarts": st["window_restarts"],
                "decode_tokens_per_s": st["decode_tokens"] / st["decode_s"] if st["decode_s"] else 0.0,
                "prefill_tokens_per_s": st["prefill_tokens"] / st["prefill_s"] if st["prefill_s"] else 0.0,
                "ms_per_step": 1e3 * st["decode_s"] / steps if steps else 0.0})
    return rec


def describe(a):
    return (f"{a.n_layer} layers, width {a.n_embd}, {a.n_head} heads, context {a.block_size}, "
            f"vocab {a.vocab}, {a.dtype}, prompts of {a.prompt_len}, {a.tokens} new tokens")


def markdown(runs, fgs, a, device_name):
    modes = [m for m in a.modes if any(r["mode"] == m for r in runs)]
    out = []
    for path, fg in (fgs or [(None, None)]):
        for kind in ("decode", "prefill"):
            key = kind + "_tokens_per_s"
            title = f"{kind.capitalize()} tokens/s on {device_name} ({describe(a)})"
            if fg is not None:
                title += f"; flashgrad: {path}, ratio = flashgrad / best PyTorch mode"
                diff = [k for k in ARCH_DEFAULTS if k != "batch" and fg.get(k) != getattr(a, k)]
                if diff:
                    title += f" (CONFIG DIFFERS: {', '.join(diff)})"
            head = ["batch"] + (["flashgrad"] if fg else []) + [f"torch {m}" for m in modes]
            head += ["best", "ratio"] if fg else []
            out += [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for B in a.batch:
                cells, vals = [str(B)], []
                fgr = next((r for r in (fg or {}).get("results", []) if r["batch"] == B), None)
                if fg is not None:
                    cells.append(f"{fgr[key]:.1f}" if fgr else "–")
                for m in modes:
                    r = next((r for r in runs if r["mode"] == m and r["batch"] == B), None)
                    if r is None or "error" in r:
                        cells.append("error" if r else "–")
                    else:
                        vals.append((r[key], m))
                        cells.append(f"{r[key]:.1f}" + ("" if r["tokens"] == a.tokens else f" ({r['tokens']} tok)"))
                if fg is not None:
                    best = max(vals) if vals else None
                    cells.append(f"{best[0]:.1f} ({best[1]})" if best else "–")
                    cells.append(f"{fgr[key] / best[0]:.2f}" if best and fgr and best[0] > 0 else "–")
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    errors = [f"- {r['mode']} batch {r['batch']}: {r['error']}" for r in runs if "error" in r]
    return "\n".join(out + (["Errors:"] + errors if errors else [])).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flashgrad-json", action="append", default=[],
                    help="output of `flashgrad bench decode --json` (repeatable)")
    ap.add_argument("--modes", default="eager,graph,compile", help="comma separated: eager, graph, compile")
    ap.add_argument("--device", default="cuda", help="cuda or cpu (cpu: a smoke test)")
    for k in ("n_layer", "n_embd", "n_head", "block_size", "vocab", "prompt_len", "tokens"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, help=f"default {ARCH_DEFAULTS[k]}")
    ap.add_argument("--dtype", choices=sorted(DTYPES), help="default bf16")
    ap.add_argument("--batch", help="batch sizes, comma separated; default 1,8,64")
    ap.add_argument("--span-buckets", type=int, default=4,
                    help="graph/compile: attend over block_size/2^k keys, k < this (1 = whole cache)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time guard per (mode, batch)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls for fp32")
    ap.add_argument("--out-json", help="write every number and the environment here")
    ap.add_argument("--out-md", help="write the comparison tables (markdown) here")
    a = ap.parse_args()

    fgs = []
    for path in a.flashgrad_json:
        with open(path) as f:
            fgs.append((path, json.load(f)))
    base = fgs[0][1] if fgs else {}
    for k, v in ARCH_DEFAULTS.items():  # unset: from the first flashgrad file, else flashgrad's default
        val = getattr(a, k)
        if k == "batch":
            a.batch = ([int(b) for b in val.split(",")] if val
                       else [r["batch"] for r in base["results"]] if base else v)
        elif val is None:
            setattr(a, k, base.get(k, v))
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if a.n_embd % a.n_head or not 1 <= a.prompt_len <= a.block_size or a.tokens < 1 or a.span_buckets < 1:
        sys.exit("compare_sample: bad configuration")
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("compare_sample: no CUDA device visible to PyTorch")
    if a.tf32:
        torch.set_float32_matmul_precision("high")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    torch.manual_seed(0)
    model = GPT(a).to(dev, DTYPES[a.dtype]).eval()
    print(f"compare_sample on {device_name}, torch {torch.__version__}: {describe(a)}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, greedy", flush=True)
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device_name,
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "argv": sys.argv}
    config = {k: getattr(a, k) for k in ARCH_DEFAULTS}
    config.update(span_buckets=a.span_buckets, max_seconds=a.max_seconds, tf32=a.tf32)
    runs = []

    def save():  # after every run, so that a crash keeps what was measured
        table = markdown(runs, fgs, a, device_name)
        if a.out_json:
            with open(a.out_json, "w") as f:
                json.dump({"env": env, "config": config, "runs": runs,
                           "flashgrad": {p: fg for p, fg in fgs}}, f, indent=1)
        if a.out_md:
            with open(a.out_md, "w") as f:
                f.write(table)
        return table

    with torch.inference_mode():
        for B in a.batch:
            g = torch.Generator().manual_seed(7 + B)
            prompts = torch.randint(a.vocab, (B, a.prompt_len), generator=g).to(dev)
            for mode in a.modes:
                rec = {"mode": mode, "batch": B}
                try:
                    rec.update(bench_one(model, mode, prompts, a))
                    print(f"{mode:8s} batch {B:4d}: decode {rec['decode_tokens_per_s']:10.1f} tok/s "
                          f"({rec['ms_per_step']:.3f} ms/step), prefill {rec['prefill_tokens_per_s']:10.1f} tok/s, "
                          f"{rec['tokens']} tokens, {rec['window_restarts']} restarts, "
                          f"setup {rec['setup_s']:.1f} s", flush=True)
                except Exception as e:  # noqa: BLE001  one mode never ends the script
                    rec["error"] = short(e)
                    print(f"{mode:8s} batch {B:4d}: FAILED {rec['error']}", flush=True)
                runs.append(rec)
                model.kc = model.vc = None  # free this run's cache, graphs and compiled code
                if mode == "compile" and hasattr(torch, "_dynamo"):
                    torch._dynamo.reset()
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                save()
    print("\n" + save(), flush=True)


if __name__ == "__main__":
    main()
