"""Peer of tfm_attention_bench: PyTorch's scaled_dot_product_attention on the same shapes.

Self-attention from a fused QKV tensor [B, T, 3*D] viewed as q, k, v [B, H, T, d] (no copies,
as nn.MultiheadAttention-style code does), bf16 by default, B*T ~= --tokens. Forward FLOPs
4*B*H*T*T*d (halved when causal), backward 2.5x forward; median of --repeats runs timed with
CUDA events after a warm-up. The backward time is the forward+backward time minus the forward
time. Prints the same table and RESULT lines as tfm_attention_bench.

    python3 bench/attention_peer.py [--dtype bf16|f16] [--tokens N] [--repeats R] [--dropout P]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    parser.add_argument("--tokens", type=int, default=25000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("attention_peer: no GPU visible; nothing to measure")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}   dtype: {args.dtype}   "
          f"tokens/batch: ~{args.tokens}   dropout: {args.dropout}   median of {args.repeats}"
          f"   torch {torch.__version__}")
    print(f"{'model':<5} {'T':>5} {'B':>5} {'causal':>7} | {'fwd ms':>9} {'fwd TF/s':>9} | "
          f"{'bwd ms':>9} {'bwd TF/s':>9}")
    for name, heads, head_dim in (("base", 8, 64), ("big", 16, 64)):
        for T in (32, 64, 128, 256):
            B = max(1, args.tokens // T)
            D = heads * head_dim
            qkv = (torch.rand(B, T, 3 * D, device=dev, dtype=torch.float32) * 2 - 1).to(dtype)
            qkv.requires_grad_(True)
            dout = (torch.rand(B, heads, T, head_dim, device=dev) * 2 - 1).to(dtype)

            def views():
                q, k, v = qkv.view(B, T, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
                return q, k, v

            for causal in (False, True):
                def forward():
                    q, k, v = views()
                    return F.scaled_dot_product_attention(
                        q, k, v, dropout_p=args.dropout, is_causal=causal)

                def forward_backward():
                    out = forward()
                    out.backward(dout)
                    qkv.grad = None

                with torch.no_grad():
                    fwd = time_ms(forward, args.repeats)
                both = time_ms(forward_backward, args.repeats)
                bwd = max(both - fwd, 1e-6)
                flops = 4.0 * B * heads * T * T * head_dim * (0.5 if causal else 1.0)
                fwd_tf = flops / (fwd * 1e-3) / 1e12
                bwd_tf = 2.5 * flops / (bwd * 1e-3) / 1e12
                print(f"{name:<5} {T:>5} {B:>5} {'yes' if causal else 'no':>7} | "
                      f"{fwd:>9.3f} {fwd_tf:>9.1f} | {bwd:>9.3f} {bwd_tf:>9.1f}")
                print(f"RESULT attention_peer model={name} T={T} B={B} causal={int(causal)} "
                      f"dtype={args.dtype} fwd_ms={fwd:.4f} fwd_tflops={fwd_tf:.2f} "
                      f"bwd_ms={bwd:.4f} bwd_tflops={bwd_tf:.2f}")


if __name__ == "__main__":
    main()
