#!/usr/bin/env python3
"""train-voice: trains brainjar's default voice in PyTorch, every weight of it.

The model is the llama architecture exactly as llama.cpp computes it (so that its weights,
written back into a GGUF by `brainjar-train import`, give llama.cpp the same loss):
RMSNorm (eps 1e-5, weight after the normalization), RoPE in GGML's NORM mode (adjacent pairs
rotate together; base 10000, every dimension of a head), causal attention scaled by
1/sqrt(head size), SwiGLU (down(silu(gate(x)) * up(x))), an untied output. Torch's Linear keeps
a weight as [out, in] with `in` contiguous, which is GGUF's [ne0 = in, ne1 = out]: the bytes go
across unchanged, nothing is permuted.

Training: AdamW (betas 0.9/0.95), linear warm-up then cosine, the gradient's global norm
clipped, bf16 autocast on CUDA, dropout; batches of random windows of --ctx tokens (a seeded
generator). The last --dev-share of the training tokens is held back as a development set: it
picks the best step (the run keeps the weights of the lowest development loss) without ever
looking at the held-out text, which is only measured. Resumable: --ckpt holds model, optimizer,
step, schedule and random state, and a later run with the same --ckpt continues; --init DIR
starts from exported weights instead (fresh optimizer moments, the rate warms up again).

Inputs are int32 token files from `brainjar-train tokenize` (the real SPM vocabulary, a BOS
before each unit). Outputs in --out: loss.csv (the columns brainjar-train writes, so
scripts/plot-loss reads it), result.json, and with --export: weights.bin (GGUF order; matrices
in ggml's Q8_0, norms F32) and manifest.txt ("name type n_elements offset" a line) for
`brainjar-train import`.

    train-voice.py --train train.tok --valid valid.tok --out DIR --embd 384 --layers 6 \\
        --heads 6 --ff 1024 --ctx 2048 --budget-s 400 --export
    train-voice.py check --train train.tok --out DIR ...   one random model's loss on fixed windows
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

RMS_EPS = 1e-5
ROPE_BASE = 10000.0


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        return (y * self.weight.float()).to(x.dtype)


def rope_tables(n_ctx, head_dim, device):
    inv = ROPE_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    ang = torch.arange(n_ctx, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):
    """GGML's NORM mode: (x[2i], x[2i+1]) rotates by position * base^(-2i/head_dim)."""
    t = x.shape[-2]
    c, s = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


def attend(q, k, v, dropout):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    t = q.shape[-2]  # torch < 2.0 (Debian 12's python3-torch): the same, spelled out
    att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    att = F.dropout(att.masked_fill(mask, float("-inf")).softmax(-1), dropout)
    return att @ v


class Block(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attn_norm = RMSNorm(d)
        self.attn_q = nn.Linear(d, d, bias=False)
        self.attn_k = nn.Linear(d, d, bias=False)
        self.attn_v = nn.Linear(d, d, bias=False)
        self.attn_output = nn.Linear(d, d, bias=False)
        self.ffn_norm = RMSNorm(d)
        self.ffn_gate = nn.Linear(d, ff, bias=False)
        self.ffn_up = nn.Linear(d, ff, bias=False)
        self.ffn_down = nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin):
        b, t, d = x.shape
        hd = d // self.heads
        p = self.dropout if self.training else 0.0
        h = self.attn_norm(x)
        q, k, v = (m(h).view(b, t, self.heads, hd).transpose(1, 2) for m in (self.attn_q, self.attn_k, self.attn_v))
        a = attend(rope(q, cos, sin), rope(k, cos, sin), v, p)
        x = x + F.dropout(self.attn_output(a.transpose(1, 2).reshape(b, t, d)), p, self.training)
        h = self.ffn_norm(x)
        return x + F.dropout(self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h)), p, self.training)


class Voice(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, ctx, dropout):
        super().__init__()
        self.token_embd = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff, dropout) for _ in range(layers))
        self.output_norm = RMSNorm(d)
        self.output = nn.Linear(d, vocab, bias=False)
        self.ctx, self.head_dim = ctx, d // heads
        for name, prm in self.named_parameters():
            if prm.dim() == 2:  # GPT-2 style: small normal, the residual writers smaller still
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attn_output.weight", "ffn_down.weight")) else 0.02
                nn.init.normal_(prm, 0.0, std)

    def forward(self, idx):
        cos, sin = rope_tables(idx.shape[1], self.head_dim, idx.device)
        x = self.token_embd(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.output(self.output_norm(x))

    def gguf_tensors(self):
        """(GGUF name, parameter) in the order `brainjar-train init` writes them."""
        out = [("token_embd.weight", self.token_embd.weight), ("output_norm.weight", self.output_norm.weight),
               ("output.weight", self.output.weight)]
        for i, blk in enumerate(self.blocks):
            for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                      "ffn_down"):
                out.append((f"blk.{i}.{n}.weight", getattr(blk, n).weight))
        return out


def log(msg):
    print(f"train-voice: {msg}", file=sys.stderr, flush=True)


def load_tokens(path):
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.int32).long()


def tensor_bytes(t):
    """The bytes of a tensor as it lies in memory (little-endian here and on the GPU machine)."""
    t = t.detach().cpu().contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


@torch.no_grad()
def eval_windows(model, toks, ctx, device, max_windows=0, batch=8):
    """Mean cross-entropy over the non-overlapping windows of toks from its start, each window
    predicting its next tokens: what `brainjar-train eval --ctx CTX --eval-windows 0` measures."""
    n = (len(toks) - 1) // ctx
    if max_windows:
        n = min(n, max_windows)
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, n, batch):
        k = min(batch, n - i)
        x = torch.stack([toks[(i + j) * ctx:(i + j + 1) * ctx] for j in range(k)]).to(device)
        y = torch.stack([toks[(i + j) * ctx + 1:(i + j + 1) * ctx + 1] for j in range(k)]).to(device)
        logits = model(x).float()
        total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="sum").item()
    model.train(was)
    return total / (n * ctx), n * ctx


def q8_0(x):
    """ggml's Q8_0 of a tensor whose rows are multiples of 32 long: blocks of 32 values, an F16
    scale (the block's largest magnitude / 127) and 32 int8. Returns (bytes, dequantized values)."""
    v = x.detach().float().cpu().reshape(-1, 32)
    d = v.abs().amax(1) / 127
    inv = torch.where(d > 0, 1 / d, torch.zeros_like(d))
    q = torch.round(v * inv[:, None]).clamp(-127, 127).to(torch.int8)
    dh = d.half()
    blocks = torch.cat([dh.reshape(-1, 1).view(torch.uint8), q.view(torch.uint8)], dim=1)
    return tensor_bytes(blocks), (q.float() * dh.float()[:, None]).reshape(x.shape)


def export(model, out):
    """weights.bin (matrices in Q8_0, norms in F32, GGUF order) and manifest.txt for
    `brainjar-train import`. Q8_0 because what comes back from the GPU machine is at most 64 MiB."""
    off = 0
    with open(os.path.join(out, "weights.bin"), "wb") as wb, open(os.path.join(out, "manifest.txt"), "w") as man:
        for name, prm in model.gguf_tensors():
            if prm.dim() == 2:
                b, _ = q8_0(prm)
                typ = "q8_0"
            else:
                b, typ = tensor_bytes(prm.detach().float()), "f32"
            wb.write(b)
            man.write(f"{name} {typ} {prm.numel()} {off}\n")
            off += len(b)
    log(f"exported {off} bytes of weights to {out}")


def load_export(model, d):
    """The inverse of export (for --init)."""
    with open(os.path.join(d, "manifest.txt")) as man:
        rows = [ln.split() for ln in man if ln.strip()]
    with open(os.path.join(d, "weights.bin"), "rb") as f:
        blob = bytearray(f.read())
    params = dict(model.gguf_tensors())
    with torch.no_grad():
        for name, typ, n, off in rows:
            n, off, prm = int(n), int(off), params[name]
            if typ == "q8_0":
                raw = torch.frombuffer(blob, dtype=torch.uint8, count=n // 32 * 34, offset=off).reshape(-1, 34)
                dh = raw[:, :2].contiguous().view(torch.float16).float()
                q = raw[:, 2:].contiguous().view(torch.int8).float()
                prm.copy_((q * dh).reshape(prm.shape))
            else:
                prm.copy_(torch.frombuffer(blob, dtype=torch.float32, count=n, offset=off).view_as(prm))


def round_to_export(model):
    """The weights as the export holds them (matrices through Q8_0), so that what is measured
    here is what llama.cpp gets."""
    with torch.no_grad():
        for prm in model.parameters():
            if prm.dim() == 2:
                prm.copy_(q8_0(prm)[1].to(prm.device))


def lr_at(step, a, total, restart):
    if step < a.warmup:
        lr = a.lr * (step + 1) / a.warmup
    elif total <= 0:
        lr = a.lr
    else:
        prog = min(1.0, (step - a.warmup) / max(1, total - a.warmup))
        lr = a.lr_min + 0.5 * (a.lr - a.lr_min) * (1 + math.cos(math.pi * prog))
    if restart is not None and step - restart < a.warmup:  # fresh moments after --init
        lr *= (step - restart + 1) / a.warmup
    return lr


def train(a):
    torch.manual_seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(a.out, exist_ok=True)
    tr_all = load_tokens(a.train)
    n_dev = int(len(tr_all) * a.dev_share)
    tr, dev = tr_all[:len(tr_all) - n_dev], tr_all[len(tr_all) - n_dev:]
    va = load_tokens(a.valid) if a.valid else None
    model = Voice(a.vocab, a.embd, a.layers, a.heads, a.ff, a.ctx, a.dropout).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if device == "cuda" else {}))
    gen = torch.Generator().manual_seed(a.seed)
    st = {"step": 0, "total": a.steps, "best_dev": float("inf"), "best_step": 0, "restart": None, "tokens": 0}
    if a.ckpt and os.path.exists(a.ckpt):
        ck = torch.load(a.ckpt, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        st.update(ck["state"])
        log(f"resumed from {a.ckpt} at step {st['step']} of {st['total']}")
    elif a.init:
        load_export(model, a.init)
        st["restart"] = 0
        log(f"weights from {a.init}; optimizer moments start again")
    log(f"{device}: {n_params / 1e6:.2f} M parameters (embd {a.embd}, layers {a.layers}, heads {a.heads}, "
        f"ff {a.ff}, ctx {a.ctx}, dropout {a.dropout}); train {len(tr)} tokens, dev {len(dev)}, "
        f"held-out {len(va) if va is not None else 0}")
    fresh = not os.path.exists(os.path.join(a.out, "loss.csv"))
    csv = open(os.path.join(a.out, "loss.csv"), "a")
    if fresh:
        csv.write("step,epoch,loss,lr,tokens_this_run,seconds_this_run\n")
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    t0 = time.time()
    run0, tokens_run, last_eval = st["step"], 0, time.time()
    model.train()
    while st["total"] <= 0 or st["step"] < st["total"]:
        if a.time_limit and time.time() - t0 > a.time_limit:
            log(f"time limit at step {st['step']}")
            break
        starts = torch.randint(0, len(tr) - a.ctx - 1, (a.batch,), generator=gen)
        x = torch.stack([tr[s:s + a.ctx] for s in starts]).to(device, non_blocking=True)
        y = torch.stack([tr[s + 1:s + a.ctx + 1] for s in starts]).to(device, non_blocking=True)
        lr = lr_at(st["step"], a, st["total"], st["restart"])
        for g in opt.param_groups:
            g["lr"] = lr
        with amp:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        st["step"] += 1
        tokens_run += a.batch * a.ctx
        el = time.time() - t0
        lv = loss.item()
        if not math.isfinite(lv):
            log(f"loss is {lv} at step {st['step']}: stopping")
            return 1
        csv.write(f"{st['step']},{st['step'] * a.batch * a.ctx / len(tr):.4f},{lv:.6f},{lr:.6g},{tokens_run},{el:.2f}\n")
        # --budget-s: plan the cosine from the speed measured over the first steps of this run.
        if a.budget_s and st["step"] - run0 == 30:
            st["total"] = st["step"] + int((a.budget_s - el) / (el / 30))
            log(f"budget {a.budget_s:.0f} s at {30 / el:.2f} steps/s ({tokens_run / el:.0f} tokens/s): "
                f"{st['total']} steps in all")
        done = st["total"] > 0 and st["step"] >= st["total"]
        if done or time.time() - last_eval > a.eval_every_s:
            dl, _ = eval_windows(model, dev, a.ctx, device, a.dev_windows)
            if dl < st["best_dev"]:
                st["best_dev"], st["best_step"] = dl, st["step"]
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log(f"step {st['step']}/{st['total']} loss {lv:.4f} dev {dl:.4f} (best {st['best_dev']:.4f} at "
                f"{st['best_step']}) lr {lr:.3g} |g| {gnorm:.2f} {tokens_run / el:.0f} tok/s")
            csv.flush()
            last_eval = time.time()
            if a.ckpt:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "state": st},
                           a.ckpt + ".tmp")
                os.replace(a.ckpt + ".tmp", a.ckpt)
    csv.close()
    el = time.time() - t0
    res = {"params": n_params, "embd": a.embd, "layers": a.layers, "heads": a.heads, "ff": a.ff, "ctx": a.ctx,
           "dropout": a.dropout, "steps": st["step"], "steps_this_run": st["step"] - run0,
           "tokens_this_run": tokens_run, "seconds": round(el, 1), "tokens_per_s": round(tokens_run / max(el, 1e-9)),
           "epochs": round(st["step"] * a.batch * a.ctx / len(tr), 2), "best_step": st["best_step"],
           "best_dev": st["best_dev"], "last_train_loss": lv if st["step"] > run0 else None}
    model.load_state_dict(best)
    round_to_export(model)  # what the export holds: the held-out figure is the exported model's
    model.float()
    if va is not None:
        for c in sorted({512, a.ctx}):
            l, n = eval_windows(model, va, c, device)
            res[f"heldout_ctx{c}"] = l
            log(f"held-out (ctx {c}, {n} tokens, best step {st['best_step']}, exported weights): loss {l:.4f} "
                f"perplexity {math.exp(l):.1f}")
    if a.export:
        export(model, a.out)
    with open(os.path.join(a.out, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0


def check(a):
    """A random model of this shape, its weights exported, and its loss on the first windows of
    --train: `brainjar-train import` + `eval` on the same windows must agree (RoPE, layout)."""
    torch.manual_seed(a.seed)
    model = Voice(a.vocab, a.embd, a.layers, a.heads, a.ff, a.ctx, 0.0)
    with torch.no_grad():  # larger than the init so that every tensor matters to the loss
        for name, prm in model.named_parameters():
            if prm.dim() == 2:
                prm.normal_(0.0, 0.08)
            else:
                prm.uniform_(0.5, 1.5)
    round_to_export(model)
    os.makedirs(a.out, exist_ok=True)
    export(model, a.out)
    toks = load_tokens(a.train)
    l, n = eval_windows(model, toks, a.ctx, "cpu", a.dev_windows)
    print(f"torch: loss {l:.4f} over {n} tokens (ctx {a.ctx})")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", nargs="?", default="train", choices=["train", "check"])
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt", help="full training state (resumed when it exists)")
    ap.add_argument("--init", help="start from exported weights (DIR with manifest.txt, weights.bin)")
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--embd", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=16, help="windows per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient clipping: the global norm's limit")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=0, help="plan the cosine to end after this many seconds")
    ap.add_argument("--time-limit", type=float, default=0)
    ap.add_argument("--eval-every-s", type=float, default=20)
    ap.add_argument("--dev-share", type=float, default=0.02)
    ap.add_argument("--dev-windows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.embd % a.heads or (a.embd // a.heads) % 2:
        sys.exit("train-voice: --embd must be a multiple of --heads, with an even head size")
    return check(a) if a.cmd == "check" else train(a)


if __name__ == "__main__":
    sys.exit(main())
