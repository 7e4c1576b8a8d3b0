#!/usr/bin/env python3
"""Training speed of flashgrad beside PyTorch on the same architecture, same machine, same run.

Builds flashgrad's GPT in PyTorch (pre-LayerNorm blocks, learned positions, tied embeddings,
GELU (tanh) MLP, biases, dropout, fused QKV projection, causal scaled-dot-product attention)
and trains it as `flashgrad train` does: AdamW (betas 0.9/0.99, eps 1e-8, weight decay 0.1 on
matrices and embeddings only), gradient clipping at 1.0, random batches of the corpus. It
times steps after a warm-up (eager, and torch.compile where this PyTorch has it); it runs
`flashgrad bench train` with the same config, vocabulary and step counts (the same step on
random token ids, timed the same way) and prints both with the ratios, peak memory, and
flashgrad's model FLOP utilisation and time split.

  python3 bench/compare_train.py --preset tiny --device cpu            # the README's default run
  python3 bench/compare_train.py --preset gpt12 --device cuda --dtype bf16 --modes eager,compile

Under torchrun (WORLD_SIZE > 1) the PyTorch side trains data-parallel with DistributedDataParallel
over NCCL, one process per GPU, --batch per GPU, each rank its own batches; tokens/s counts every
rank's tokens, rank 0 prints and writes the JSON, and flashgrad is not run (time `flashgrad
train --gpus N` beside it):

  torchrun --standalone --nproc-per-node 2 bench/compare_train.py --preset gpt12 --device cuda \
      --dtype bf16 --modes eager,compile --no-flashgrad

Presets: tiny (2 layers, 4 heads, width 128, context 64, batch 16: flashgrad's default),
small (6, 6, 384, 256, batch 64), gpt12 (12, 12, 768, 1024, batch 16, dropout 0.1), gpt24
(24, 16, 1024, 1024, batch 8, dropout 0.1); --batch N overrides the batch on both sides. Tokens/s = batch x context / the mean step time over
the timed steps (each step synchronised; the loss is read as flashgrad reads it). The vocabulary
is the corpus's characters, as flashgrad's char tokenizer builds it.
"""
import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, block_size=64, batch=16, dropout=0.0),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=64, dropout=0.2),
    "gpt12": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch=16, dropout=0.1),
    "gpt24": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024, batch=8, dropout=0.1),
}


class Block(nn.Module):
    def __init__(self, C, H, p):
        super().__init__()
        self.H, self.p = H, p
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.drop = nn.Dropout(p)

    def attend(self, q, k, v):
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                  dropout_p=self.p if self.training else 0.0)
        T = q.shape[-2]  # PyTorch < 2.0: the plain way
        s = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        return F.dropout(s.softmax(-1), self.p, self.training) @ v

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(B, T, 3, self.H, C // self.H).permute(2, 0, 3, 1, 4)
        y = self.attend(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.drop(self.c_proj(y))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))


class GPT(nn.Module):
    def __init__(self, vocab, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c["n_embd"]), nn.Embedding(c["block_size"], c["n_embd"])
        self.drop = nn.Dropout(c["dropout"])
        self.blocks = nn.ModuleList(Block(c["n_embd"], c["n_head"], c["dropout"]) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["n_embd"])
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        x = self.drop(self.wte(idx) + self.wpe.weight[: idx.shape[1]])
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.view(-1))


def corpus(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    return torch.tensor([index[ch] for ch in text], dtype=torch.long), len(chars)


def world_rank():
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def train_pytorch(data, vocab, c, a, mode):
    torch.manual_seed(1337)
    world, rank = world_rank()
    dev = torch.device(a.device)
    if world > 1:  # DDP: one process per GPU (torchrun)
        import torch.distributed as dist
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        if not dist.is_initialized():
            dist.init_process_group("nccl")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    model = GPT(vocab, c).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    kw = {"fused": True} if dev.type == "cuda" else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.99), eps=1e-8, **kw)
    step_fn = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        step_fn = DistributedDataParallel(model, device_ids=[dev.index])
    if mode == "compile":
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch {torch.__version__} has no torch.compile")
        step_fn = torch.compile(step_fn)
    B, T = c["batch"], c["block_size"]
    g = torch.Generator().manual_seed(7 + rank)

    def batch():
        ix = torch.randint(len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    def step():
        x, y = batch()
        ctx = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        with ctx:
            loss = step_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()  # flashgrad reads its loss every step too

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    if dev.type == "cuda":
        torch.cuda.synchronize()  # the last step's backward and update count too
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    return {"mode": mode, "tokens_per_s": world * B * T * a.steps / dt,
            "ms_per_step": 1e3 * dt / a.steps, "last_loss": loss, "peak_memory_bytes": mem,
            "gpus": world}


def train_flashgrad(c, a, preset, vocab):
    binary = a.flashgrad
    if not os.path.exists(binary):
        return {"error": f"{binary} not found (build first, or pass --flashgrad)"}
    with tempfile.TemporaryDirectory() as out:
        js = os.path.join(out, "bench.json")
        cmd = [binary, "bench", "train", "--preset", preset, "--vocab", str(vocab),
               "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", a.device,
               "--dtype", a.dtype, "--batch-size", str(c["batch"]), "--json", js]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0 or not os.path.exists(js):
            return {"error": f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}", "command": " ".join(cmd)}
        with open(js) as f:
            r = json.load(f)
    r["command"] = " ".join(cmd)
    r["output"] = p.stdout.strip()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (0: the preset's)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "fortunes.txt"))
    ap.add_argument("--flashgrad", default=os.path.join(os.path.dirname(__file__), "..", "build", "flashgrad"))
    ap.add_argument("--no-flashgrad", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads for the PyTorch side (0: PyTorch's default)")
    ap.add_argument("--out-json")
    a = ap.parse_args()
    if a.torch_threads > 0:
        torch.set_num_threads(a.torch_threads)
    c = dict(PRESETS[a.preset])
    if a.batch > 0:
        c["batch"] = a.batch
    data, vocab = corpus(a.data)
    world, rank = world_rank()
    if rank != 0:  # DDP: rank 0 reports
        sys.stdout = open(os.devnull, "w")
    fg = None if a.no_flashgrad or world > 1 else train_flashgrad(c, a, a.preset, vocab)
    res = {"preset": a.preset, "config": c, "device": a.device, "dtype": a.dtype, "vocab": vocab,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
           "pytorch": [], "flashgrad": None, "gpus": world}
    print(f"{a.preset}: {c}, vocab {vocab}, {a.device} {a.dtype}"
          f"{f', DDP on {world} GPUs (batch per GPU)' if world > 1 else ''}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {a.steps} timed steps after {a.warmup}", flush=True)
    for mode in a.modes.split(","):
        try:
            r = train_pytorch(data, vocab, c, a, mode)
            print(f"  pytorch {mode:8s} {r['tokens_per_s']:10.0f} tok/s  {r['ms_per_step']:8.2f} ms/step"
                  f"  {r['peak_memory_bytes'] / 2**30:6.2f} GiB peak", flush=True)
        except Exception as e:  # one mode failing must not lose the others
            r = {"mode": mode, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
            print(f"  pytorch {mode:8s} failed: {r['error']}", flush=True)
        res["pytorch"].append(r)
    if fg is not None:
        f = fg
        res["flashgrad"] = f
        if "error" in f:
            print(f"  flashgrad failed: {f['error']}", flush=True)
        else:
            best = max((r["tokens_per_s"] for r in res["pytorch"] if "tokens_per_s" in r), default=0)
            ratio = f["tokens_per_s"] / best if best else float("nan")
            mem = f.get("peak_memory_bytes", 0) / 2**30
            mfu = f"{100 * f['mfu']:.1f}%" if f.get("mfu") else "n/a"
            print(f"  flashgrad        {f['tokens_per_s']:10.0f} tok/s  {f['ms_per_step']:8.2f} ms/step"
                  f"  {mem:6.2f} GiB peak  MFU {mfu}  matmul {100 * f['matmul_share']:.0f}%"
                  f" attention {100 * f['attention_share']:.0f}% other {100 * f['other_share']:.0f}%", flush=True)
            for r in res["pytorch"]:
                if "tokens_per_s" in r:
                    print(f"  flashgrad / pytorch {r['mode']}: {f['tokens_per_s'] / r['tokens_per_s']:.2f}x", flush=True)
            print(f"  (ratio to the best PyTorch mode {ratio:.2f})", flush=True)
            res["ratio_to_best_pytorch"] = ratio
    if a.out_json and rank == 0:
        with open(a.out_json, "w") as fo:
            json.dump(res, fo, indent=2)
    if world > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
