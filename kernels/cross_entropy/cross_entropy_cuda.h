// CUDA twin of label-smoothed softmax cross-entropy (kernels/cross_entropy/cross_entropy.h):
// same contract and arguments, called by the public dispatcher when ctx.device == Device::cuda.
// One block per row: a single pass keeps a running (max, Σ exp(x − max), Σ x) per thread in
// fp32, merged across the block in a fixed order; loss, nll and lse are f32; probabilities are
// never written. Backward recomputes softmax from lse and writes dlogits (may alias logits) in
// the logits' dtype (or, vocabulary-parallel, a column block of it given the global lse). Logits
// bf16, f16 or f32; 16-byte loads and stores when V and the pointers allow, else element loads.
//
// Targets live on the device, so they are not checked on the host: a row whose target is
// neither ignore_index nor in [0, V) gets loss = nll = NaN in forward and a NaN gradient row in
// backward (so the step's loss and gradient norm are non-finite and the step is skipped), and
// raises a device flag that cross_entropy_invalid_target_seen() reports.
#pragma once
#include "kernels/cross_entropy/cross_entropy.h"

namespace tfm::cuda {

void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                           int32_t ignore_index, double smoothing, const Tensor& loss,
                           const Tensor& nll, const Tensor& lse);

// vocab_offset, vocab_total as the public call, already resolved (vocab_total ≥ 1) and checked.
void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, int32_t ignore_index, double smoothing,
                            double grad_scale, const Tensor& dlogits, int64_t vocab_offset,
                            int64_t vocab_total);

// Vocabulary-parallel forward: stats f32 [N, 3] (one block per row, as forward); the combine runs
// one thread per row over the P ranks in order. A negative target that is not ignore_index gets
// a NaN stat (partial) and one outside [0, vocab_total) NaN loss and nll (combine), and raises
// the invalid-target flag.
void cross_entropy_partial_stats(const Context& ctx, const Tensor& logits_local,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_offset,
                                 const Tensor& stats);
void cross_entropy_combine_stats(const Context& ctx, const Tensor& stats_all,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_total,
                                 double smoothing, const Tensor& loss, const Tensor& nll,
                                 const Tensor& lse);

// Whether a cross-entropy kernel on the current device met an invalid target id since the flag
// was last cleared; clears it when `clear`. Synchronises the device first.
bool cross_entropy_invalid_target_seen(bool clear = true);

}  // namespace tfm::cuda
