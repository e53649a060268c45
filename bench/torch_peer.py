#!/usr/bin/python3
"""PyTorch peer of bench/train_bench.cpp (issues 2 and 6), on the CPU or one GPU.

The same Transformer, the same batch, the same training step, timed the same way, printed in the
same format.

Runs under Debian's python3-torch 1.13 (CPU): /usr/bin/python3 bench/torch_peer.py --preset tiny
and on a GPU (torch 2.x): python3 bench/torch_peer.py --preset base --device cuda [--compile]

The model is the one tfm builds (model/transformer.cpp, DESIGN.md):
  * post-norm encoder-decoder, preset shapes (tiny: d 256, d_ff 1024, 4 heads, 2+2 layers;
    base: 512, 2048, 8, 6+6), no final encoder/decoder norm (tfm's post-norm stack has none);
  * one embedding matrix shared by source, target and the pre-softmax projection (no bias),
    embeddings scaled by sqrt(d_model), sinusoidal positions added, dropout on the sum;
  * dropout (default 0.1) on embeddings and on every sub-layer output before the residual add;
    none on attention probabilities or after the FFN's ReLU (tfm's defaults);
  * key-padding masks on every attention and the causal mask on decoder self-attention;
  * label-smoothed cross-entropy, eps 0.1, over non-pad targets, summed and divided by their
    count; F.cross_entropy(label_smoothing=eps) is DESIGN.md's definition
    loss = (1 - eps)(-lp[y]) + eps * mean_v(-lp[v])  (--check-loss verifies it numerically);
  * Adam(beta 0.9, 0.98, eps 1e-9).

--impl nn (default) builds the layers from torch.nn.TransformerEncoderLayer/DecoderLayer
(nn.MultiheadAttention with its fused in-projection), with the attention-probability and ReLU
dropouts those layers add switched off so the computation is tfm's; --impl hand is a
hand-written module (F.linear, bmm, softmax) with the same computation.

One step = optimizer.zero_grad(set_to_none=True), forward, backward, optimizer.step().
tokens/s = (source + target non-pad tokens) per step / median step time, as tfm_train_bench;
cpu_ms = process CPU time per step (all threads), median. FLOPs/step: the formula
tfm_train_bench states (model_flops below).

--device cuda (issue 6): fp32 master weights with the forward and loss under
torch.autocast(bfloat16) (--precision bf16, the default there), or float16 with a GradScaler
(--precision fp16: initial scale 1024, as tfm_train_bench's fixed scale, never grown; it still
checks for overflow, which tfm_train_bench does not), or plain fp32. Adam is the fused CUDA
kernel (fused=True) where this torch has it. Each step is bracketed by torch.cuda.synchronize().
The default implementation there is --impl hand, whose attention calls
F.scaled_dot_product_attention (the fused flash / memory-efficient kernels) when this torch has
it — with no mask when the batch has no padding (the benchmark's never does) and is_causal for
decoder self-attention, so the flash kernel qualifies. --compile wraps the model and its loss in
torch.compile (torch 2.x). Memory: torch.cuda.max_memory_allocated (mem_mib) and cudaMemGetInfo's
total - free after the run (device_used_mib, the caching allocator's reserve and the CUDA
context included). --peak-tflops X adds MFU = model FLOPs/s / X.
"""
import argparse
import inspect
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(d_model=256, d_ff=1024, heads=4, layers=2),
    "base": dict(d_model=512, d_ff=2048, heads=8, layers=6),
    "big": dict(d_model=1024, d_ff=4096, heads=16, layers=6),
}
PAD, BOS, EOS = 0, 2, 3


def sinusoid(length, d):
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(0, d, 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, i / d)
    pe = torch.zeros(length, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.float()


HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0


class HandAttention(nn.Module):
    """Multi-head attention, heads interleaved in the last dimension as tfm lays them out.

    use_sdpa: F.scaled_dot_product_attention (fused kernels) instead of matmul / softmax / matmul.
    mask: additive float mask broadcastable to [B, H, Tq, Tk], or None (no padding); causal: the
    decoder's self-attention mask when `mask` is None (with a mask, the mask already holds it)."""

    def __init__(self, d, heads, self_attention, use_sdpa=False):
        super().__init__()
        self.d, self.h, self.self_attention = d, heads, self_attention
        self.use_sdpa = use_sdpa and HAVE_SDPA
        self.in_proj = nn.Linear(d, 3 * d)  # [Q; K; V] as tfm's fused projection
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x, memory, mask, causal=False):
        b, tq, d = x.shape
        h, dk = self.h, d // self.h
        if self.self_attention:
            q, k, v = F.linear(x, self.in_proj.weight, self.in_proj.bias).chunk(3, dim=-1)
        else:
            q = F.linear(x, self.in_proj.weight[:d], self.in_proj.bias[:d])
            k, v = F.linear(memory, self.in_proj.weight[d:], self.in_proj.bias[d:]).chunk(2, dim=-1)
        tk = k.shape[1]
        q = q.reshape(b, tq, h, dk).transpose(1, 2)
        k = k.reshape(b, tk, h, dk).transpose(1, 2)
        v = v.reshape(b, tk, h, dk).transpose(1, 2)
        if self.use_sdpa:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               is_causal=causal and mask is None)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dk))
            if mask is not None:
                scores = scores + mask
            elif causal:
                scores = scores + causal_mask(tq, x.device)
            o = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out_proj(o.transpose(1, 2).reshape(b, tq, d))


def causal_mask(t, device):
    return torch.triu(torch.full((t, t), float("-inf"), device=device), diagonal=1)


class HandEncoderLayer(nn.Module):
    def __init__(self, d, ff, heads, p, use_sdpa):
        super().__init__()
        self.attn = HandAttention(d, heads, True, use_sdpa)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.p = p

    def forward(self, x, mask):
        x = self.norm1(x + F.dropout(self.attn(x, None, mask), self.p, self.training))
        f = self.fc2(F.relu(self.fc1(x)))
        return self.norm2(x + F.dropout(f, self.p, self.training))


class HandDecoderLayer(nn.Module):
    def __init__(self, d, ff, heads, p, use_sdpa):
        super().__init__()
        self.self_attn = HandAttention(d, heads, True, use_sdpa)
        self.cross_attn = HandAttention(d, heads, False, use_sdpa)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.p = p

    def forward(self, y, memory, self_mask, cross_mask):
        y = self.norm1(y + F.dropout(self.self_attn(y, None, self_mask, causal=True), self.p,
                                     self.training))
        y = self.norm2(y + F.dropout(self.cross_attn(y, memory, cross_mask), self.p, self.training))
        f = self.fc2(F.relu(self.fc1(y)))
        return self.norm3(y + F.dropout(f, self.p, self.training))


class Seq2Seq(nn.Module):
    def __init__(self, impl, vocab, d, ff, heads, layers, p, use_sdpa=False):
        super().__init__()
        self.impl, self.d, self.heads, self.p = impl, d, heads, p
        self.embed = nn.Embedding(vocab, d)
        nn.init.normal_(self.embed.weight, 0.0, d ** -0.5)
        self.register_buffer("pe", sinusoid(4096, d), persistent=False)
        if impl == "nn":
            def enc():
                layer = nn.TransformerEncoderLayer(d, heads, ff, p, batch_first=True)
                layer.self_attn.dropout = 0.0      # tfm: no attention-probability dropout
                layer.dropout = nn.Identity()      # tfm: no dropout after the FFN's ReLU
                return layer

            def dec():
                layer = nn.TransformerDecoderLayer(d, heads, ff, p, batch_first=True)
                layer.self_attn.dropout = 0.0
                layer.multihead_attn.dropout = 0.0
                layer.dropout = nn.Identity()
                return layer

            self.encoder = nn.ModuleList([enc() for _ in range(layers)])
            self.decoder = nn.ModuleList([dec() for _ in range(layers)])
        else:
            self.encoder = nn.ModuleList([HandEncoderLayer(d, ff, heads, p, use_sdpa)
                                          for _ in range(layers)])
            self.decoder = nn.ModuleList([HandDecoderLayer(d, ff, heads, p, use_sdpa)
                                          for _ in range(layers)])

    def embed_tokens(self, tokens):
        x = self.embed(tokens) * math.sqrt(self.d) + self.pe[: tokens.shape[1]]
        return F.dropout(x, self.p, self.training)

    def forward(self, src, src_pad, tgt_in, tgt_pad):
        """src_pad / tgt_pad: boolean [B, T] padding masks, or None when the batch has none."""
        tt = tgt_in.shape[1]
        x = self.embed_tokens(src)
        y = self.embed_tokens(tgt_in)
        if self.impl == "nn":
            causal = causal_mask(tt, tgt_in.device)
            for layer in self.encoder:
                x = layer(x, src_key_padding_mask=src_pad)
            for layer in self.decoder:
                y = layer(y, x, tgt_mask=causal, tgt_key_padding_mask=tgt_pad,
                          memory_key_padding_mask=src_pad)
        else:
            # Additive masks [B, 1, 1, Tk] (padding) and [B, 1, Tt, Tt] (padding + causal); none
            # without padding (the layers then apply the causal mask themselves).
            src_mask = tgt_mask = None
            if src_pad is not None:
                src_mask = torch.zeros(src_pad.shape, dtype=torch.float32, device=src.device)
                src_mask = src_mask.masked_fill(src_pad, float("-inf"))[:, None, None, :]
            if tgt_pad is not None:
                tgt_mask = torch.zeros(tgt_pad.shape, dtype=torch.float32, device=src.device)
                tgt_mask = tgt_mask.masked_fill(tgt_pad, float("-inf"))[:, None, None, :]
                tgt_mask = tgt_mask + causal_mask(tt, tgt_in.device)
            for layer in self.encoder:
                x = layer(x, src_mask)
            for layer in self.decoder:
                y = layer(y, x, tgt_mask, src_mask)
        return F.linear(y, self.embed.weight)  # tied pre-softmax projection, no bias


def model_flops(cfg, vocab, batch, ts, tt):
    """The formula tfm_train_bench states (matmuls ×6, attention 12·d·Tq·Tk per layer and pair)."""
    d, ff, l = float(cfg["d_model"]), float(cfg["d_ff"]), float(cfg["layers"])
    ns, nt = float(batch * ts), float(batch * tt)
    matmul = 6.0 * (ns * l * (4 * d * d + 2 * d * ff) + nt * l * (6 * d * d + 2 * d * ff)
                    + ns * l * 2 * d * d + nt * vocab * d)
    attention = 12.0 * d * batch * (l * ts * ts + l * (tt * tt + tt * ts))
    return matmul + attention


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def check_loss():
    """F.cross_entropy(label_smoothing=eps, ignore_index=PAD) equals DESIGN.md's definition."""
    g = torch.Generator().manual_seed(0)
    n, v, eps = 64, 1000, 0.1
    logits = torch.randn(n, v, generator=g, dtype=torch.float64) * 3
    y = torch.randint(4, v, (n,), generator=g)
    y[::7] = PAD
    lp = torch.log_softmax(logits, dim=-1)
    keep = y != PAD
    ours = ((1 - eps) * -lp[torch.arange(n), y] + eps * (-lp).mean(dim=-1))[keep].sum()
    theirs = F.cross_entropy(logits, y, ignore_index=PAD, label_smoothing=eps, reduction="sum")
    err = abs(ours.item() - theirs.item()) / abs(ours.item())
    print(f"check-loss: DESIGN.md definition {ours.item():.12f}, F.cross_entropy "
          f"{theirs.item():.12f}, relative difference {err:.2e}")
    return err < 1e-12


class WithLoss(nn.Module):
    """The model and its loss in one module, so torch.compile sees (and fuses) the whole forward."""

    def __init__(self, model, vocab):
        super().__init__()
        self.model, self.vocab = model, vocab

    def forward(self, src, src_pad, tgt_in, tgt_pad, tgt_out):
        logits = self.model(src, src_pad, tgt_in, tgt_pad)
        return F.cross_entropy(logits.reshape(-1, self.vocab).float(), tgt_out.reshape(-1),
                               ignore_index=PAD, label_smoothing=0.1, reduction="sum")


def make_adam(params, device):
    kw = dict(lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    if device == "cuda" and "fused" in inspect.signature(torch.optim.Adam.__init__).parameters:
        try:
            return torch.optim.Adam(params, fused=True, **kw), "fused"
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, **kw), "default"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--dropout", type=float, default=None, help="default: 0.1 (big: 0.3)")
    ap.add_argument("--impl", default=None, choices=["nn", "hand"],
                    help="default: nn on the CPU, hand on cuda")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                    help="default: fp32 on the CPU, bf16 on cuda (autocast)")
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "math"],
                    help="--impl hand's attention: auto = F.scaled_dot_product_attention on cuda "
                         "when this torch has it, else matmul/softmax/matmul")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model and loss")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the GPU's dense peak in TFLOP/s, for MFU (0: not stated)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-loss", action="store_true", help="verify the loss definition and exit")
    a = ap.parse_args()
    if a.check_loss:
        return 0 if check_loss() else 1

    cuda = a.device == "cuda"
    impl = a.impl or ("hand" if cuda else "nn")
    precision = a.precision or ("bf16" if cuda else "fp32")
    if not cuda and precision != "fp32":
        ap.error(f"--precision {precision}: reduced precision is for --device cuda")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: this torch sees no GPU")
    if a.compile and not hasattr(torch, "compile"):
        ap.error(f"--compile: torch {torch.__version__} has no torch.compile")
    if a.attention == "sdpa" and not HAVE_SDPA:
        ap.error(f"--attention sdpa: torch {torch.__version__} has no scaled_dot_product_attention")
    use_sdpa = HAVE_SDPA and (a.attention == "sdpa" or (a.attention == "auto" and cuda))
    attention = ("sdpa" if use_sdpa else "math") if impl == "hand" else "nn.MultiheadAttention"

    threads = a.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cfg = PRESETS[a.preset]
    p = a.dropout if a.dropout is not None else (0.3 if a.preset == "big" else 0.1)
    model = Seq2Seq(impl, a.vocab, cfg["d_model"], cfg["d_ff"], cfg["heads"], cfg["layers"], p,
                    use_sdpa).to(dev)
    model.train()
    opt, adam_kind = make_adam(model.parameters(), a.device)
    step_fn = WithLoss(model, a.vocab)
    if a.compile:
        step_fn = torch.compile(step_fn)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = None
    if precision == "fp16":
        if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
            scaler = torch.amp.GradScaler("cuda", init_scale=1024.0, growth_interval=1 << 30)
        else:
            scaler = torch.cuda.amp.GradScaler(init_scale=1024.0, growth_interval=1 << 30)

    # Fixed lengths, no padding: sources x1..x_{Ts-1} EOS; decoder input BOS y1..y_{Tt-1};
    # targets y1..y_{Tt-1} EOS. Random ids in [4, V).
    b, ts, tt = a.batch, a.src_len, a.tgt_len
    src = torch.randint(4, a.vocab, (b, ts))
    src[:, -1] = EOS
    body = torch.randint(4, a.vocab, (b, tt - 1))
    tgt_in = torch.cat([torch.full((b, 1), BOS), body], dim=1)
    tgt_out = torch.cat([body, torch.full((b, 1), EOS)], dim=1)
    src_pad, tgt_pad = src == PAD, tgt_in == PAD
    tgt_tokens = int((tgt_out != PAD).sum())
    tokens = int((src != PAD).sum()) + tgt_tokens
    # On the GPU a batch without padding gets no padding masks (tfm's kernels take lengths, so
    # an unpadded batch costs them nothing either); the CPU path keeps its masks as it always had.
    if cuda and not (bool(src_pad.any()) or bool(tgt_pad.any())):
        src_pad = tgt_pad = None
    src, tgt_in, tgt_out = src.to(dev), tgt_in.to(dev), tgt_out.to(dev)
    if src_pad is not None:
        src_pad, tgt_pad = src_pad.to(dev), tgt_pad.to(dev)
    flops = model_flops(cfg, a.vocab, b, ts, tt)
    nparams = sum(t.numel() for t in model.parameters())

    print(f"torch_peer: preset {a.preset} (torch {torch.__version__}, impl {impl}, "
          f"d_model {cfg['d_model']}, d_ff {cfg['d_ff']}, heads {cfg['heads']}, layers "
          f"{cfg['layers']}+{cfg['layers']}, vocab {a.vocab}, dropout {p}, label smoothing 0.1)")
    if cuda:
        print(f"  device cuda ({torch.cuda.get_device_name(0)}), {precision}"
              f"{' autocast, fp32 master weights' if autocast_dtype else ''}"
              f"{', GradScaler from 1024' if scaler else ''}, attention {attention}, "
              f"Adam {adam_kind}, compile {'on' if a.compile else 'off'}")
    print(f"  parameters {nparams}, batch {b} × ({ts} + {tt}) = {tokens} tokens/step, "
          f"{torch.get_num_threads()} threads")
    print(f"  model FLOPs/step {flops * 1e-9:.3f} G")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times, loss = [], [], float("nan")
    for k in range(a.warmup + a.steps):
        sync()
        t, cpu0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        if autocast_dtype is not None:
            with torch.autocast("cuda", dtype=autocast_dtype):
                loss_sum = step_fn(src, src_pad, tgt_in, tgt_pad, tgt_out)
        else:
            loss_sum = step_fn(src, src_pad, tgt_in, tgt_pad, tgt_out)
        if scaler is not None:
            scaler.scale(loss_sum / tgt_tokens).backward()
            scaler.step(opt)
            scaler.update()
        else:
            (loss_sum / tgt_tokens).backward()
            opt.step()
        sync()
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu0
        loss = loss_sum.item() / tgt_tokens
        if k >= a.warmup:
            times.append(dt)
            cpu_times.append(cpu)
    med, cpu_med, best = median(times), median(cpu_times), min(times)
    tps, gflops = tokens / med, flops / med * 1e-9
    print(f"  step time median {med * 1e3:.2f} ms, best {best * 1e3:.2f} ms over {a.steps} "
          f"steps ({a.warmup} warm-up), CPU time {cpu_med * 1e3:.2f} ms/step; loss {loss:.4f}")
    print(f"  {tps:.0f} tokens/s, {gflops:.1f} GFLOP/s")
    line = (f"RESULT torch preset={a.preset} tokens_per_s={tps:.1f} step_ms={med * 1e3:.3f} "
            f"cpu_ms={cpu_med * 1e3:.3f} gflops={gflops:.2f} flops_per_step={flops:.6e} "
            f"threads={torch.get_num_threads()} tokens={tokens} loss={loss:.5f} impl={impl}")
    if cuda:
        mib = 1.0 / (1 << 20)
        free, total = torch.cuda.mem_get_info()
        mem, used = torch.cuda.max_memory_allocated() * mib, (total - free) * mib
        mfu = gflops * 1e-3 / a.peak_tflops if a.peak_tflops > 0 else float("nan")
        print(f"  {gflops * 1e-3:.1f} TFLOP/s"
              + (f", MFU {100 * mfu:.1f}% of the stated {a.peak_tflops:.1f}" if a.peak_tflops > 0 else ""))
        print(f"  device memory: max allocated {mem:.0f} MiB; device in use {used:.0f} MiB")
        line += (f" device=cuda precision={precision} attention={attention} "
                 f"compile={int(a.compile)} adam={adam_kind} "
                 f"peak_tflops={a.peak_tflops if a.peak_tflops > 0 else float('nan'):.1f} "
                 f"mfu={mfu:.4f} mem_mib={mem:.0f} device_used_mib={used:.0f}")
    else:
        line += f" device=cpu precision={precision}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
