// Multi-head scaled dot-product attention (Vaswani et al. §3.2):
//   out_h = Dropout(softmax(Q_h K_hᵀ / √d_k + mask)) V_h   for every head h.
//
// Layout: heads interleaved in the last dimension, exactly as the projections produce them, so
// nothing is transposed. q is [B, Tq, Wq] and the H·d_k columns starting at q_col are the query
// heads (head h at q_col + h·d_k); likewise k, v [B, Tk, W] at k_col, v_col. A fused Q/K/V
// projection [B, T, 3·D] is passed as q = k = v with columns 0, D, 2·D.
// Masks: key j of batch b is visible iff j < key_lengths[b] (padding), and, when causal, j ≤ i
// (causal needs Tq == Tk). Every query sees at least key 0, so no row is empty.
// Dropout on the probabilities: element ((b·H + h)·Tq + i)·Tk + j of the DropoutSpec's range,
// mapped by dropout_element(). Tensor parallelism: a call holding heads [h0, h0 + H) of H_total
// passes dropout_column_block(spec, H·Tq·Tk, H_total·Tq·Tk, h0·Tq·Tk) and draws exactly those
// heads' mask of the unsharded call (a block must be a whole number of rows of Tk).
// Saved for backward: lse [B, H, Tq] (log-sum-exp of the scaled, masked scores), in the
// accumulation type. The CUDA twin never materialises the Tq × Tk matrix.
// CPU twin (attention_cpu.cpp): key_lengths in host memory; per thread a Tq × Tk scratch (two in
// backward) taken from ctx.workspace when set, else allocated for the call.
#pragma once
#include "kernels/core/context.h"
#include "kernels/core/philox.h"

namespace tfm {

struct AttentionArgs {
  int64_t heads = 1;
  int64_t head_dim = 0;
  int64_t q_col = 0, k_col = 0, v_col = 0;
  bool causal = false;
  DropoutSpec dropout;
};

// key_lengths [B] i32 on the context's device; out [B, Tq, H·d_k] contiguous.
void attention_forward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                       const Tensor& out, const Tensor& lse);

// dq, dk, dv have the layouts (and column offsets) of q, k, v and may be one buffer, as q, k, v
// may; their H·d_k columns are written (=), other columns untouched.
void attention_backward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv);

}  // namespace tfm
