// The Transformer's building blocks (Vaswani et al. 2017, §3), each a class that registers its
// parameters, runs forward saving what backward needs, and runs backward by hand.
//
// Conventions: activations are [B, T, D] tensors from the step's arena; parameter gradients
// accumulate (+=) into the ParameterStore's gradient buffer; backward returns the gradient of the
// block's input. A block holds the saved state of its most recent forward, so one model instance
// runs one micro-batch at a time.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/attention/attention.h"
#include "kernels/core/arena.h"
#include "kernels/core/context.h"
#include "model/config.h"
#include "model/parameters.h"
#include "model/tensor_parallel.h"

namespace tfm {

// One forward/backward pass: where it runs, its scratch memory, and its randomness.
struct Step {
  const Context& ctx;
  Arena& arena;
  bool training = true;
  uint64_t seed = 0;  // dropout seed of this pass (the trainer derives it from seed and step)

  // Each dropout site owns a disjoint range of 2^40 Philox counters, so no two sites (or two
  // passes with different seeds) share a mask.
  DropoutSpec dropout(double p, uint64_t site) const {
    if (!training || p <= 0.0) return DropoutSpec{};
    return DropoutSpec{float(p), seed, site << 40};
  }
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims) { return arena.alloc(dtype, dims); }
};

// Dropout sites are numbered in construction order; the number is part of the mask's identity.
struct SiteCounter {
  uint64_t next = 1;
  uint64_t take() { return next++; }
};

// y = x·Wᵀ + b with W [out, in]: the indices of its two parameters. Column-parallel (Split::rows)
// splits the outputs, weight and bias alike; row-parallel (Split::cols) splits the inputs and
// keeps the bias whole (added once, by TP rank 0, before the partial sums are all-reduced).
struct LinearParams {
  int weight = -1, bias = -1;
};
LinearParams add_linear(ParameterStore& store, const std::string& name, int64_t in, int64_t out,
                        Split split = Split::replicated);

// Multi-head attention (§3.2.2): Q, K, V projections, scaled dot-product attention per head,
// output projection. Self-attention projects one input through a fused [3·D, D] matrix;
// cross-attention projects the decoder state to Q and the encoder output to K, V ([2·D, D]).
// Under tensor parallelism each rank runs its H/tp heads (model/tensor_parallel.h).
class MultiHeadAttention {
 public:
  MultiHeadAttention(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
                     const TensorParallel& tp, bool self_attention, SiteCounter& sites);
  // x [B, Tq, D]; memory [B, Tk, D] for cross-attention (ignored for self-attention);
  // key_lengths [B] i32 masks padded keys; causal masks future positions (self-attention only).
  Tensor forward(Step& s, const Tensor& x, const Tensor& memory, const Tensor& key_lengths,
                 bool causal);
  // Returns dx; for cross-attention also adds the memory's gradient into dmemory (under TP this
  // rank's partial sum: the model all-reduces d(memory) once, after the whole decoder).
  Tensor backward(Step& s, const Tensor& dy, const Tensor& dmemory);

 private:
  const ParameterStore& store_;
  const ModelConfig& cfg_;
  const TensorParallel& tp_;
  bool self_;
  uint64_t site_;
  int q_weight_ = -1, q_bias_ = -1, out_weight_ = -1, out_bias_ = -1;
  // Saved by forward.
  Tensor x_, memory_, q_, kv_, attn_, lse_, key_lengths_;
  AttentionArgs args_;
};

// Position-wise feed-forward network (§3.3): FFN(x) = max(0, x·W1 + b1)·W2 + b2. Under tensor
// parallelism each rank holds d_ff/tp of the hidden units (fc1 column-, fc2 row-parallel).
class FeedForward {
 public:
  FeedForward(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
              const TensorParallel& tp, SiteCounter& sites);
  Tensor forward(Step& s, const Tensor& x);
  Tensor backward(Step& s, const Tensor& dy);

 private:
  const ParameterStore& store_;
  const ModelConfig& cfg_;
  const TensorParallel& tp_;
  uint64_t site_;
  LinearParams fc1_, fc2_;
  DropoutSpec hidden_dropout(const Step& s) const;
  Tensor x_, hidden_;  // hidden_: after ReLU (and dropout, when relu_dropout > 0)
};

// The residual connection around a sub-layer with its dropout and layer norm (§3.1, §5.4):
//   post-norm (the paper): out = LayerNorm(x + Dropout(F(x)))
//   pre-norm:              out = x + Dropout(F(LayerNorm(x)))
// Used as: f = F(sub.input(x)); out = sub.output(x, f). Backward mirrors it:
//   sub.output_backward(dout) gives d(x via the residual) and d(f); then
//   sub.input_backward(dF_input, dx) adds the sub-layer's input gradient into dx.
class Residual {
 public:
  Residual(ParameterStore& store, const std::string& norm_name, const ModelConfig& cfg,
           SiteCounter& sites);
  Tensor input(Step& s, const Tensor& x);
  Tensor output(Step& s, const Tensor& x, const Tensor& f);
  // Returns {dx (residual path), df}.
  std::pair<Tensor, Tensor> output_backward(Step& s, const Tensor& dout);
  void input_backward(Step& s, const Tensor& d_input, const Tensor& dx);

 private:
  const ParameterStore& store_;
  const ModelConfig& cfg_;
  uint64_t site_;
  int gamma_ = -1, beta_ = -1;
  Tensor normed_input_, mean_, rstd_;  // what the layer norm saved (its input and statistics)
};

// A standalone layer norm (the final norm of a pre-norm stack).
class LayerNorm {
 public:
  LayerNorm(ParameterStore& store, const std::string& name, const ModelConfig& cfg);
  Tensor forward(Step& s, const Tensor& x);
  Tensor backward(Step& s, const Tensor& dy);

 private:
  const ParameterStore& store_;
  double eps_;
  int gamma_ = -1, beta_ = -1;
  Tensor x_, mean_, rstd_;
};

}  // namespace tfm
