#include "model/transformer.h"

#include <cmath>

#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/dropout/dropout.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/linear/linear.h"

namespace tfm {

namespace {

DType stats_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }
Tensor rows_of(const Tensor& t) { return t.view({t.numel() / t.dim(-1), t.dim(-1)}); }

// A host token matrix as an i32 tensor. The ops only read it.
Tensor host_ids(const std::vector<int32_t>& ids, std::initializer_list<int64_t> dims) {
  return Tensor(const_cast<int32_t*>(ids.data()), DType::i32, Device::cpu, dims);
}

double host_sum(const Tensor& t) {
  double s = 0;
  if (t.dtype == DType::f64) {
    for (int64_t i = 0; i < t.numel(); ++i) s += t.as<double>()[i];
  } else {
    for (int64_t i = 0; i < t.numel(); ++i) s += t.as<float>()[i];
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoder and decoder layers

EncoderLayer::EncoderLayer(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
                           SiteCounter& sites)
    : self_attn_(store, name + ".self_attn", cfg, /*self_attention=*/true, sites),
      residual1_(store, name + ".norm1", cfg, sites),
      ffn_(store, name + ".ffn", cfg, sites),
      residual2_(store, name + ".norm2", cfg, sites) {}

Tensor EncoderLayer::forward(Step& s, const Tensor& x, const Tensor& src_lengths) {
  Tensor a = self_attn_.forward(s, residual1_.input(s, x), Tensor(), src_lengths, /*causal=*/false);
  Tensor h = residual1_.output(s, x, a);
  Tensor f = ffn_.forward(s, residual2_.input(s, h));
  return residual2_.output(s, h, f);
}

Tensor EncoderLayer::backward(Step& s, const Tensor& dy) {
  auto [dh, df] = residual2_.output_backward(s, dy);
  residual2_.input_backward(s, ffn_.backward(s, df), dh);
  auto [dx, da] = residual1_.output_backward(s, dh);
  residual1_.input_backward(s, self_attn_.backward(s, da, Tensor()), dx);
  return dx;
}

DecoderLayer::DecoderLayer(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
                           SiteCounter& sites)
    : self_attn_(store, name + ".self_attn", cfg, /*self_attention=*/true, sites),
      residual1_(store, name + ".norm1", cfg, sites),
      cross_attn_(store, name + ".cross_attn", cfg, /*self_attention=*/false, sites),
      residual2_(store, name + ".norm2", cfg, sites),
      ffn_(store, name + ".ffn", cfg, sites),
      residual3_(store, name + ".norm3", cfg, sites) {}

Tensor DecoderLayer::forward(Step& s, const Tensor& y, const Tensor& tgt_lengths,
                             const Tensor& memory, const Tensor& src_lengths) {
  // Masked self-attention: position i sees target positions ≤ i only.
  Tensor a = self_attn_.forward(s, residual1_.input(s, y), Tensor(), tgt_lengths, /*causal=*/true);
  Tensor h1 = residual1_.output(s, y, a);
  Tensor c = cross_attn_.forward(s, residual2_.input(s, h1), memory, src_lengths, /*causal=*/false);
  Tensor h2 = residual2_.output(s, h1, c);
  Tensor f = ffn_.forward(s, residual3_.input(s, h2));
  return residual3_.output(s, h2, f);
}

Tensor DecoderLayer::backward(Step& s, const Tensor& dy, const Tensor& dmemory) {
  auto [dh2, df] = residual3_.output_backward(s, dy);
  residual3_.input_backward(s, ffn_.backward(s, df), dh2);
  auto [dh1, dc] = residual2_.output_backward(s, dh2);
  residual2_.input_backward(s, cross_attn_.backward(s, dc, dmemory), dh1);
  auto [dx, da] = residual1_.output_backward(s, dh1);
  residual1_.input_backward(s, self_attn_.backward(s, da, Tensor()), dx);
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Embeddings

Embeddings::Embeddings(const ParameterStore& store, int table, const ModelConfig& cfg,
                       SiteCounter& sites)
    : store_(store), table_(table), cfg_(cfg), site_(sites.take()) {}

Tensor Embeddings::forward(Step& s, const Tensor& tokens) {
  tokens_ = tokens;
  Tensor out = s.alloc(store_.dtype(), {tokens.dim(0), tokens.dim(1), cfg_.d_model});
  embedding_forward(s.ctx, tokens, store_.value(table_), std::sqrt(double(cfg_.d_model)), out);
  dropout_forward(s.ctx, out, out, s.dropout(cfg_.dropout, site_));
  return out;
}

void Embeddings::backward(Step& s, const Tensor& dout) {
  dropout_backward(s.ctx, dout, dout, s.dropout(cfg_.dropout, site_));
  embedding_backward(s.ctx, tokens_, dout, std::sqrt(double(cfg_.d_model)), store_.grad(table_));
}

// ---------------------------------------------------------------------------------------------
// Transformer

Transformer::Transformer(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  const int64_t v = cfg_.vocab_size, d = cfg_.d_model;
  switch (cfg_.sharing) {
    case EmbeddingSharing::all:  // one matrix: source, target and pre-softmax (§3.4)
      src_table_ = tgt_table_ = out_proj_ = store_.add("embed.weight", {v, d}, Init::normal_scaled);
      break;
    case EmbeddingSharing::tgt:
      src_table_ = store_.add("encoder.embed.weight", {v, d}, Init::normal_scaled);
      tgt_table_ = out_proj_ = store_.add("decoder.embed.weight", {v, d}, Init::normal_scaled);
      break;
    case EmbeddingSharing::none:
      src_table_ = store_.add("encoder.embed.weight", {v, d}, Init::normal_scaled);
      tgt_table_ = store_.add("decoder.embed.weight", {v, d}, Init::normal_scaled);
      break;
  }
  src_embed_ = std::make_unique<Embeddings>(store_, src_table_, cfg_, sites_);
  tgt_embed_ = std::make_unique<Embeddings>(store_, tgt_table_, cfg_, sites_);
  for (int64_t i = 0; i < cfg_.encoder_layers; ++i)
    encoder_.push_back(std::make_unique<EncoderLayer>(
        store_, "encoder.layers." + std::to_string(i), cfg_, sites_));
  for (int64_t i = 0; i < cfg_.decoder_layers; ++i)
    decoder_.push_back(std::make_unique<DecoderLayer>(
        store_, "decoder.layers." + std::to_string(i), cfg_, sites_));
  if (cfg_.norm == NormPlacement::pre) {
    encoder_norm_ = std::make_unique<LayerNorm>(store_, "encoder.norm", cfg_);
    decoder_norm_ = std::make_unique<LayerNorm>(store_, "decoder.norm", cfg_);
  }
  // Registered last: its gradient is complete first in backward.
  if (cfg_.sharing == EmbeddingSharing::none)
    out_proj_ = store_.add("output_proj.weight", {v, d}, Init::normal_scaled);
}

Tensor Transformer::encode(Step& s, const Tensor& src, const Tensor& src_lengths) {
  Tensor x = src_embed_->forward(s, src);
  for (auto& layer : encoder_) x = layer->forward(s, x, src_lengths);
  if (encoder_norm_) x = encoder_norm_->forward(s, x);
  return x;
}

Tensor Transformer::decode_logits(Step& s, const Tensor& tgt_in, const Tensor& tgt_lengths,
                                  const Tensor& memory, const Tensor& src_lengths) {
  Tensor y = tgt_embed_->forward(s, tgt_in);
  for (auto& layer : decoder_) y = layer->forward(s, y, tgt_lengths, memory, src_lengths);
  if (decoder_norm_) y = decoder_norm_->forward(s, y);
  decoder_out_ = y;
  // Pre-softmax projection with the (shared) embedding matrix, no bias: logits = y·Eᵀ.
  Tensor logits = s.alloc(y.dtype, {y.dim(0), y.dim(1), cfg_.vocab_size});
  linear_forward(s.ctx, rows_of(y), store_.value(out_proj_), Tensor(), Activation::none,
                 rows_of(logits));
  return logits;
}

LossStats Transformer::forward(Step& s, const Batch& batch, Tensor* logits_out) {
  TFM_CHECK(store_.allocated(), "model: parameters not allocated");
  TFM_CHECK(s.ctx.device == Device::cpu, "model: the CUDA path is not built yet");
  const int64_t b = batch.size, ts = batch.src_len, tt = batch.tgt_len;
  src_ = host_ids(batch.src, {b, ts});
  src_lengths_ = host_ids(batch.src_lengths, {b});
  tgt_in_ = host_ids(batch.tgt_in, {b, tt});
  tgt_lengths_ = host_ids(batch.tgt_lengths, {b});
  targets_ = host_ids(batch.tgt_out, {b * tt});

  memory_ = encode(s, src_, src_lengths_);
  Tensor logits = rows_of(decode_logits(s, tgt_in_, tgt_lengths_, memory_, src_lengths_));
  const DType st = stats_dtype(logits.dtype);
  Tensor loss = s.alloc(st, {b * tt}), nll = s.alloc(st, {b * tt});
  lse_ = s.alloc(st, {b * tt});
  cross_entropy_forward(s.ctx, logits, targets_, kPadId, cfg_.label_smoothing, loss, nll, lse_);
  *logits_out = logits;

  LossStats stats;
  stats.loss_sum = host_sum(loss);
  stats.nll_sum = host_sum(nll);
  for (int32_t len : batch.tgt_lengths) stats.tokens += len;
  return stats;
}

void Transformer::backward(Step& s, const Tensor& logits, double grad_scale) {
  cross_entropy_backward(s.ctx, logits, targets_, lse_, kPadId, cfg_.label_smoothing, grad_scale,
                         logits);
  Tensor dy = s.arena.alloc_like(decoder_out_);
  linear_backward(s.ctx, rows_of(decoder_out_), store_.value(out_proj_), Tensor(),
                  Activation::none, logits, rows_of(dy), store_.grad(out_proj_), Tensor());
  if (decoder_norm_) dy = decoder_norm_->backward(s, dy);
  Tensor dmemory = s.arena.alloc_like(memory_);
  fill_zero(s.ctx, dmemory);
  for (auto it = decoder_.rbegin(); it != decoder_.rend(); ++it) dy = (*it)->backward(s, dy, dmemory);
  tgt_embed_->backward(s, dy);
  Tensor dx = dmemory;
  if (encoder_norm_) dx = encoder_norm_->backward(s, dx);
  for (auto it = encoder_.rbegin(); it != encoder_.rend(); ++it) dx = (*it)->backward(s, dx);
  src_embed_->backward(s, dx);
}

LossStats Transformer::forward_backward(const Context& ctx, Arena& arena, const Batch& batch,
                                        double grad_scale, uint64_t dropout_seed) {
  arena.reset();
  Step s{ctx, arena, /*training=*/true, dropout_seed};
  Tensor logits;
  LossStats stats = forward(s, batch, &logits);
  backward(s, logits, grad_scale);
  return stats;
}

LossStats Transformer::training_loss(const Context& ctx, Arena& arena, const Batch& batch,
                                     uint64_t dropout_seed) {
  arena.reset();
  Step s{ctx, arena, /*training=*/true, dropout_seed};
  Tensor logits;
  return forward(s, batch, &logits);
}

LossStats Transformer::evaluate(const Context& ctx, Arena& arena, const Batch& batch) {
  arena.reset();
  Step s{ctx, arena, /*training=*/false, 0};
  Tensor logits;
  LossStats stats = forward(s, batch, &logits);
  const int64_t v = cfg_.vocab_size;
  for (int64_t n = 0; n < logits.dim(0); ++n) {
    int32_t gold = batch.tgt_out[size_t(n)];
    if (gold == kPadId) continue;
    int64_t best = 0;
    if (logits.dtype == DType::f64) {
      const double* row = logits.as<double>() + n * v;
      for (int64_t j = 1; j < v; ++j) best = row[j] > row[best] ? j : best;
    } else {
      const float* row = logits.as<float>() + n * v;
      for (int64_t j = 1; j < v; ++j) best = row[j] > row[best] ? j : best;
    }
    stats.correct += best == gold;
  }
  return stats;
}

}  // namespace tfm
