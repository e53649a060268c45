// The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017), built
// from model/layers.h. Reads like Figure 1:
//   encoder layer: self-attention → Add & Norm → feed-forward → Add & Norm
//   decoder layer: masked self-attention → Add & Norm → cross-attention over the encoder output
//                  → Add & Norm → feed-forward → Add & Norm
//   embeddings:    Dropout(Embedding(x)·√d_model + PE), shared with the pre-softmax projection
// Loss: label-smoothed cross-entropy over non-pad target positions (DESIGN.md).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "data/batch.h"
#include "kernels/core/buffer.h"
#include "model/layers.h"

namespace tfm {

class EncoderLayer {
 public:
  EncoderLayer(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
               const TensorParallel& tp, SiteCounter& sites);
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
               const TensorParallel& tp, SiteCounter& sites);
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

// Token embedding · √d_model + sinusoidal positions, then dropout (§3.4, §3.5, §5.4). Under
// tensor parallelism the table is split by vocabulary: each rank looks up the ids it holds
// (zero for the others; rank 0 adds the positions) and the sum is all-reduced.
class Embeddings {
 public:
  Embeddings(const ParameterStore& store, int table, const ModelConfig& cfg,
             const TensorParallel& tp, SiteCounter& sites);
  Tensor forward(Step& s, const Tensor& tokens);  // tokens [B, T] → [B, T, D]
  void backward(Step& s, const Tensor& dout);    // into the table's gradient

 private:
  const ParameterStore& store_;
  int table_;
  const ModelConfig& cfg_;
  const TensorParallel& tp_;
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

// ---------------------------------------------------------------------------------------------
// Incremental decoding with cached keys and values (model/incremental.cpp).
//
// A DecoderState holds a batch of `rows` hypotheses being decoded together, all at the same
// position t (the number of tokens fed so far, BOS included). Per decoder layer it keeps
//   self_kv  [rows, capacity, 2·D]: the self-attention keys (columns [0, D)) and values
//            ([D, 2·D)) of positions 0..t−1; the unfilled tail is masked with the attention
//            op's key_lengths (= t + 1 during the step that fills position t);
//   cross_kv [rows, Ts, 2·D]: the cross-attention keys and values of the row's encoder output,
//            computed once by start_decoding.
// Forward only, no dropout: the cache replaces the saved state of the layer classes.
class DecoderState {
 public:
  int64_t rows() const { return rows_; }
  int64_t position() const { return position_; }    // tokens fed so far
  int64_t capacity() const { return capacity_; }    // positions the cache can hold
  int64_t sentence(int64_t row) const { return sentence_.at(size_t(row)); }  // source of a row

  // Beam search: new row i continues old row rows[i] (a gather: rows may repeat, be dropped, or
  // shrink the batch when sentences finish). Throws naming the row when one is out of range.
  void reorder(const std::vector<int64_t>& rows);

  // Parameter indices of one decoder layer, looked up by name (DESIGN.md's naming).
  struct LayerIndex {
    int self_qkv_w = -1, self_qkv_b = -1, self_out_w = -1, self_out_b = -1;
    int cross_q_w = -1, cross_q_b = -1, cross_out_w = -1, cross_out_b = -1;
    int fc1_w = -1, fc1_b = -1, fc2_w = -1, fc2_b = -1;
    int norm_g[3] = {-1, -1, -1}, norm_b[3] = {-1, -1, -1};
  };

 private:
  friend class Transformer;
  Device device_ = Device::cpu;
  DType dtype_ = DType::f32;
  int64_t rows_ = 0, position_ = 0, capacity_ = 0, src_len_ = 0, width_ = 0;  // width_ = 2·D
  std::vector<int32_t> src_lengths_;  // [rows] keys each row sees in cross-attention
  std::vector<int64_t> sentence_;     // [rows] the source sentence each row translates
  std::vector<LayerIndex> layers_;    // [layer]
  int final_norm_g_ = -1, final_norm_b_ = -1;  // pre-norm stacks only
  // [layer]; each buffer has room for at least rows_ rows, the spare one is reorder's target.
  std::vector<Buffer> self_kv_, cross_kv_, self_spare_, cross_spare_;
  Buffer log_probs_;  // [rows, V] of the last step
};

// log_softmax over the last dimension of host logits [N, V] (f32 or f64) into out (same shape
// and dtype; may alias), accumulated in double.
void log_softmax_rows(const Tensor& logits, const Tensor& out);

// Called during backward with each parameter whose gradient is final for this pass (each once,
// in the order backward completes them): the data-parallel reducer starts a bucket's
// all-reduce as soon as all of its parameters are reported (comm/gradient_reducer.h).
using GradientReadyHook = std::function<void(int param)>;

class Transformer {
 public:
  // tp: this rank's place in its tensor-parallel group (TP = 1 by default); the model's options
  // must split over it (check_tensor_parallel).
  explicit Transformer(const ModelConfig& cfg, const TensorParallel& tp = {});
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const TensorParallel& tensor_parallel() const { return tp_; }
  // See GradientReadyHook; an empty function (the default) turns the reports off.
  void set_gradient_ready_hook(GradientReadyHook hook) { grad_ready_ = std::move(hook); }
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

  // Incremental decoding (model/incremental.cpp; see DecoderState). start_decoding encodes
  // src [B, Ts] i32 with src_lengths [B] (host ids, as encode() takes them) and returns a state of
  // B · rows_per_sentence rows, row b·rows_per_sentence + j translating sentence b, with room for
  // `capacity` target positions (BOS included). decode_step feeds tokens[r] to row r at the
  // state's position (embedding at that position, every decoder layer for one position) and
  // returns the next token's log-probabilities [rows, V] = log_softmax(y·Eᵀ), a view into the
  // state valid until its next step or reorder. Both reset the arena. No dropout.
  DecoderState start_decoding(const Context& ctx, Arena& arena, const Tensor& src,
                              const Tensor& src_lengths, int64_t rows_per_sentence,
                              int64_t capacity);
  Tensor decode_step(const Context& ctx, Arena& arena, DecoderState& state,
                     const std::vector<int32_t>& tokens);

 private:
  LossStats forward(Step& s, const Batch& batch, Tensor* logits_out);
  void backward(Step& s, const Tensor& logits, double grad_scale);
  // Loss, NLL and log-sum-exp [N] of logits [N, V/tp] (this rank's vocabulary slice).
  void loss_forward(Step& s, const Tensor& logits, const Tensor& loss, const Tensor& nll);
  // Positions whose argmax over the whole vocabulary is the gold token.
  int64_t count_correct(Step& s, const Tensor& logits, const std::vector<int32_t>& gold);
  // Reports parameters [first, end) to the gradient-ready hook.
  void gradients_ready(int first, int end) const;

  ModelConfig cfg_;
  TensorParallel tp_;
  ParameterStore store_;
  SiteCounter sites_;
  int src_table_ = -1, tgt_table_ = -1, out_proj_ = -1;
  std::unique_ptr<Embeddings> src_embed_, tgt_embed_;
  std::vector<std::unique_ptr<EncoderLayer>> encoder_;
  std::vector<std::unique_ptr<DecoderLayer>> decoder_;
  std::unique_ptr<LayerNorm> encoder_norm_, decoder_norm_;  // pre-norm stacks only
  // Parameter index ranges [first, end) of each encoder and decoder layer, for the hook.
  std::vector<std::pair<int, int>> encoder_params_, decoder_params_;
  GradientReadyHook grad_ready_;
  // Saved by forward for backward.
  Tensor src_, src_lengths_, tgt_in_, tgt_lengths_, targets_, memory_, decoder_out_, lse_;
};

}  // namespace tfm
