// CUDA twin of multi-head attention (kernels/attention/attention.h): same contract, same
// arguments, called by the public dispatcher when ctx.device == Device::cuda. Flash-style
// (Dao et al., FlashAttention-2): tiles of queries against tiles of keys with an online softmax
// in fp32; the Tq × Tk matrix never reaches device memory. Backward recomputes P from lse and
// regenerates the dropout mask from Philox, in three passes:
//   D_i = dO_i · O_i (one dot product per query row and head, f32 scratch from ctx.workspace);
//   dK, dV per key tile, looping over query tiles;  dQ per query tile, looping over key tiles.
// The separate dQ pass recomputes S and dP (7 tile GEMMs instead of 5) but writes dq with =
// and no atomics, so results are deterministic.
//
// Supports: q, k, v, out, dout, dq, dk, dv in bf16 or f16 (tensor cores: mma.sync m16n8k16,
// fp32 accumulation, P and dS rounded to the storage type for the P·V, dS·K and dSᵀ·Q products
// as FlashAttention does) or f32 (SIMT kernels, fp32 throughout); lse f32. head_dim 1..128:
// the tensor-core kernels are compiled for padded head dims 32, 64 and 128 and zero-fill the
// columns past head_dim, so any head_dim ≤ 128 runs on them (16-byte loads when head_dim, the
// row widths, the column offsets and the pointers allow, else 2-byte loads). key_lengths are
// device i32 and are clamped to [1, Tk] in the kernels (the CPU twin rejects values outside that
// range; here they are not read on the host). Backward needs ctx.workspace, a Device::cuda arena,
// for B·H·Tq floats.
#pragma once
#include "kernels/attention/attention.h"

namespace tfm::cuda {

void attention_forward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                       const Tensor& out, const Tensor& lse);

void attention_backward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv);

// Which kernels bf16/f16 tensors take: the tensor-core kernels (automatic, the default) or the
// SIMT kernels that f32 uses. For tests and diagnosis: running both against the CPU twin tells
// a tensor-core bug from a shared one. Process-wide; not for use while other threads launch.
enum class AttentionPath { automatic, simt };
void set_attention_path(AttentionPath path);
AttentionPath attention_path();

}  // namespace tfm::cuda
