// Softmax cross-entropy with label smoothing, DESIGN.md's one definition. Per position n with
// gold class y = targets[n] and lp = log_softmax(logits[n]) over V classes:
//   loss[n] = (1 − ε)·(−lp[y]) + ε·mean_v(−lp[v]),   nll[n] = −lp[y].
// Positions with targets[n] == ignore_index (padding) get loss = nll = 0 and zero gradient.
// logits [N, V]; targets [N] i32, every other id in [0, V); loss, nll, lse [N] in the
// accumulation type. The probabilities are never stored: backward recomputes them from lse.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                           int32_t ignore_index, double smoothing, const Tensor& loss,
                           const Tensor& nll, const Tensor& lse);

// dlogits[n, v] = grad_scale · (softmax(logits[n])[v] − ((1 − ε)·[v == y] + ε / V)),
// zero rows for ignored positions; written (=), may alias logits.
// Vocabulary-parallel (Megatron): logits [N, Vl] are the classes [vocab_offset, vocab_offset + Vl)
// of vocab_total (0: Vl, the unsharded call) and lse is the global one (from
// cross_entropy_combine_stats); dlogits is then that column block of the full gradient:
// softmax = exp(l − lse), the gold class contributes −(1 − ε) only in the block that holds it,
// every class −ε/vocab_total. Targets must lie in [0, vocab_total) or be ignore_index.
void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, int32_t ignore_index, double smoothing,
                            double grad_scale, const Tensor& dlogits, int64_t vocab_offset = 0,
                            int64_t vocab_total = 0);

// ---- Vocabulary-parallel forward (Megatron-style tensor parallelism) ---------------------------
// Each of P ranks holds logits_local [N, Vl] for classes [vocab_offset, vocab_offset + Vl) of
// vocab_total (blocks may differ in size). The loss needs three numbers per row from each block,
// all-gathered and combined on every rank; the result equals cross_entropy_forward on the full
// [N, vocab_total] logits up to rounding.
//
// stats [N, 3] in the accumulation type (f32 for f32/bf16/f16 logits, f64 for f64):
//   stats[n] = { log Σ_local exp(l),  l[y − vocab_offset] if y is in this block else 0,  Σ_local l }
// ignored rows (targets[n] == ignore_index): {0,0,0} or anything; combine ignores them.
// Targets other than ignore_index must be ≥ 0 (the upper bound is checked by combine).
void cross_entropy_partial_stats(const Context& ctx, const Tensor& logits_local,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_offset,
                                 const Tensor& stats);

// stats_all [P, N, 3] (every rank's stats, as an all-gather leaves them) →
//   lse = logsumexp_p stats[p,n,0];  nll = lse − Σ_p stats[p,n,1];
//   loss = (1−ε)·nll + ε·(lse − Σ_p stats[p,n,2] / vocab_total);  ignored rows: loss = nll = 0.
// loss, nll, lse [N] in stats' dtype; targets in [0, vocab_total) or ignore_index. lse is written
// for ignored rows too (as cross_entropy_forward does).
void cross_entropy_combine_stats(const Context& ctx, const Tensor& stats_all,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_total,
                                 double smoothing, const Tensor& loss, const Tensor& nll,
                                 const Tensor& lse);

}  // namespace tfm
