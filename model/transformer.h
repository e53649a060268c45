// The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017), built
// from model/layers.h. Reads like Figure 1:
//   encoder layer: self-attention → Add & Norm → feed-forward → Add & Norm
//   decoder layer: masked self-attention → Add & Norm → cross-attention over the encoder output
//                  → Add & Norm → feed-forward → Add & Norm
//   embeddings:    Dropout(Embedding(x)·√d_model + PE), shared with the pre-softmax projection
// Loss: label-smoothed cross-entropy over non-pad target positions (DESIGN.md).
#pragma once
#include <memory>
#include <vector>

#include "data/batch.h"
#include "model/layers.h"

namespace tfm {

class EncoderLayer {
 public:
  EncoderLayer(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
               SiteCounter& sites);
  Tensor forward(Step& s, const Tensor& x, const Tensor& src_lengths);
  Tensor backward(Step& s, const Tensor& dy);

 private:
  MultiHeadAttention self_attn_;
  Residual residual1_;
  FeedForward ffn_;
  Residual residual2_;
};

class DecoderLayer {
 public:
  DecoderLayer(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
               SiteCounter& sites);
  Tensor forward(Step& s, const Tensor& y, const Tensor& tgt_lengths, const Tensor& memory,
                 const Tensor& src_lengths);
  // Adds the encoder output's gradient into dmemory.
  Tensor backward(Step& s, const Tensor& dy, const Tensor& dmemory);

 private:
  MultiHeadAttention self_attn_;
  Residual residual1_;
  MultiHeadAttention cross_attn_;
  Residual residual2_;
  FeedForward ffn_;
  Residual residual3_;
};

// Token embedding · √d_model + sinusoidal positions, then dropout (§3.4, §3.5, §5.4).
class Embeddings {
 public:
  Embeddings(const ParameterStore& store, int table, const ModelConfig& cfg, SiteCounter& sites);
  Tensor forward(Step& s, const Tensor& tokens);  // tokens [B, T] → [B, T, D]
  void backward(Step& s, const Tensor& dout);    // into the table's gradient

 private:
  const ParameterStore& store_;
  int table_;
  const ModelConfig& cfg_;
  uint64_t site_;
  Tensor tokens_;
};

struct LossStats {
  double loss_sum = 0;    // Σ label-smoothed loss over non-pad target positions
  double nll_sum = 0;     // Σ −log p(gold)
  int64_t tokens = 0;     // non-pad target positions
  int64_t correct = 0;    // positions whose argmax is the gold token (evaluate() only)
  LossStats& operator+=(const LossStats& o) {
    loss_sum += o.loss_sum; nll_sum += o.nll_sum; tokens += o.tokens; correct += o.correct;
    return *this;
  }
};

class Transformer {
 public:
  explicit Transformer(const ModelConfig& cfg);
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return cfg_; }
  ParameterStore& params() { return store_; }
  const ParameterStore& params() const { return store_; }

  // Forward and backward on one batch. Parameter gradients accumulate (+=) into params().grads()
  // as d(grad_scale · loss_sum)/dθ, so the trainer sets grad_scale = 1 / (target tokens in the
  // whole step) and calls this once per micro-batch. Dropout draws from dropout_seed.
  LossStats forward_backward(const Context& ctx, Arena& arena, const Batch& batch,
                             double grad_scale, uint64_t dropout_seed);
  // The training loss of forward_backward (same dropout masks) without the backward pass: for
  // finite-difference checks.
  LossStats training_loss(const Context& ctx, Arena& arena, const Batch& batch,
                          uint64_t dropout_seed);
  // Loss and token accuracy without dropout or gradients.
  LossStats evaluate(const Context& ctx, Arena& arena, const Batch& batch);

  // Pieces for decoding (trainer/decode): encoder output [B, Ts, D] and the logits
  // [B, Tt, V] of every target position given the full decoder input (no cache).
  Tensor encode(Step& s, const Tensor& src, const Tensor& src_lengths);
  Tensor decode_logits(Step& s, const Tensor& tgt_in, const Tensor& tgt_lengths,
                       const Tensor& memory, const Tensor& src_lengths);

 private:
  LossStats forward(Step& s, const Batch& batch, Tensor* logits_out);
  void backward(Step& s, const Tensor& logits, double grad_scale);

  ModelConfig cfg_;
  ParameterStore store_;
  SiteCounter sites_;
  int src_table_ = -1, tgt_table_ = -1, out_proj_ = -1;
  std::unique_ptr<Embeddings> src_embed_, tgt_embed_;
  std::vector<std::unique_ptr<EncoderLayer>> encoder_;
  std::vector<std::unique_ptr<DecoderLayer>> decoder_;
  std::unique_ptr<LayerNorm> encoder_norm_, decoder_norm_;  // pre-norm stacks only
  // Saved by forward for backward.
  Tensor src_, src_lengths_, tgt_in_, tgt_lengths_, targets_, memory_, decoder_out_, lse_;
};

}  // namespace tfm
