#include "model/transformer.h"

#include <cmath>

#include <cstring>

#include "comm/communicator.h"
#include "kernels/core/device.h"
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

// Token ids and lengths where the ops run: a view of the host vector on the CPU, a copy in the
// step's arena on the GPU.
Tensor ids_for(Step& s, const std::vector<int32_t>& ids, std::initializer_list<int64_t> dims) {
  Tensor host = host_ids(ids, dims);
  if (s.ctx.device == Device::cpu) return host;
  Tensor dev = s.arena.alloc(DType::i32, dims);
  copy_to_device(dev.data, host.data, host.bytes());
  return dev;
}

// A tensor's values on the host, as f32 or f64 (a device tensor is copied, bf16/f16 widened).
Buffer host_copy(const Tensor& t) {
  const DType wide = t.dtype == DType::f64 ? DType::f64 : DType::f32;
  Buffer raw(t.dtype, {t.numel()});
  if (t.device == Device::cpu) std::memcpy(raw.tensor().data, t.data, t.bytes());
  else copy_to_host(raw.tensor().data, t.data, t.bytes());
  if (t.dtype == wide) return raw;
  Buffer out(wide, {t.numel()});
  convert(Context{}, raw.tensor(), out.tensor());
  return out;
}

double host_sum(const Tensor& t) {
  if (t.device != Device::cpu || (t.dtype != DType::f32 && t.dtype != DType::f64))
    return host_sum(host_copy(t).tensor());
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
                           const TensorParallel& tp, SiteCounter& sites)
    : self_attn_(store, name + ".self_attn", cfg, tp, /*self_attention=*/true, sites),
      residual1_(store, name + ".norm1", cfg, sites),
      ffn_(store, name + ".ffn", cfg, tp, sites),
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
                           const TensorParallel& tp, SiteCounter& sites)
    : self_attn_(store, name + ".self_attn", cfg, tp, /*self_attention=*/true, sites),
      residual1_(store, name + ".norm1", cfg, sites),
      cross_attn_(store, name + ".cross_attn", cfg, tp, /*self_attention=*/false, sites),
      residual2_(store, name + ".norm2", cfg, sites),
      ffn_(store, name + ".ffn", cfg, tp, sites),
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
                       const TensorParallel& tp, SiteCounter& sites)
    : store_(store), table_(table), cfg_(cfg), tp_(tp), site_(sites.take()) {}

namespace {
// This rank's rows of the vocabulary; rank 0 alone adds the positions, so the all-reduced sum
// is exactly the unsharded embedding.
EmbeddingShard vocabulary_shard(const TensorParallel& tp, int64_t vocab) {
  EmbeddingShard shard;
  shard.vocab_offset = tp.first(vocab);
  shard.vocab_total = vocab;
  shard.add_positions = tp.rank == 0;
  return shard;
}
}  // namespace

Tensor Embeddings::forward(Step& s, const Tensor& tokens) {
  tokens_ = tokens;
  Tensor out = s.alloc(store_.compute_dtype(), {tokens.dim(0), tokens.dim(1), cfg_.d_model});
  embedding_forward(s.ctx, tokens, store_.value(table_), std::sqrt(double(cfg_.d_model)), out,
                    /*position_offset=*/0, vocabulary_shard(tp_, cfg_.vocab_size));
  reduce_from_tp_region_forward(tp_, out);
  dropout_forward(s.ctx, out, out, s.dropout(cfg_.dropout, site_));
  return out;
}

void Embeddings::backward(Step& s, const Tensor& dout_in) {
  const Tensor dout = reduce_from_tp_region_backward(tp_, dout_in);
  dropout_backward(s.ctx, dout, dout, s.dropout(cfg_.dropout, site_));
  embedding_backward(s.ctx, tokens_, dout, std::sqrt(double(cfg_.d_model)), store_.grad(table_),
                     vocabulary_shard(tp_, cfg_.vocab_size));
}

// ---------------------------------------------------------------------------------------------
// Transformer

Transformer::Transformer(const ModelConfig& cfg, const TensorParallel& tp)
    : cfg_(cfg), tp_(tp), store_(tp.rank, tp.size) {
  cfg_.validate();
  check_tensor_parallel(cfg_, tp_.size);
  const int64_t v = cfg_.vocab_size, d = cfg_.d_model;
  // Embedding tables are split by vocabulary under TP (Split::rows of [V, D]).
  auto table = [&](const std::string& name) {
    return store_.add(name, {v, d}, Init::normal_scaled, Split::rows);
  };
  switch (cfg_.sharing) {
    case EmbeddingSharing::all:  // one matrix: source, target and pre-softmax (§3.4)
      src_table_ = tgt_table_ = out_proj_ = table("embed.weight");
      break;
    case EmbeddingSharing::tgt:
      src_table_ = table("encoder.embed.weight");
      tgt_table_ = out_proj_ = table("decoder.embed.weight");
      break;
    case EmbeddingSharing::none:
      src_table_ = table("encoder.embed.weight");
      tgt_table_ = table("decoder.embed.weight");
      break;
  }
  src_embed_ = std::make_unique<Embeddings>(store_, src_table_, cfg_, tp_, sites_);
  tgt_embed_ = std::make_unique<Embeddings>(store_, tgt_table_, cfg_, tp_, sites_);
  for (int64_t i = 0; i < cfg_.encoder_layers; ++i) {
    const int first = int(store_.size());
    encoder_.push_back(std::make_unique<EncoderLayer>(
        store_, "encoder.layers." + std::to_string(i), cfg_, tp_, sites_));
    encoder_params_.emplace_back(first, int(store_.size()));
  }
  for (int64_t i = 0; i < cfg_.decoder_layers; ++i) {
    const int first = int(store_.size());
    decoder_.push_back(std::make_unique<DecoderLayer>(
        store_, "decoder.layers." + std::to_string(i), cfg_, tp_, sites_));
    decoder_params_.emplace_back(first, int(store_.size()));
  }
  if (cfg_.norm == NormPlacement::pre) {
    encoder_norm_ = std::make_unique<LayerNorm>(store_, "encoder.norm", cfg_);
    decoder_norm_ = std::make_unique<LayerNorm>(store_, "decoder.norm", cfg_);
  }
  // Registered last: its gradient is complete first in backward.
  if (cfg_.sharing == EmbeddingSharing::none) out_proj_ = table("output_proj.weight");
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
  // Pre-softmax projection with the (shared) embedding matrix, no bias: logits = y·Eᵀ. Under
  // TP each rank computes the logits of its vocabulary slice, [B, T, V/tp].
  y = copy_to_tp_region_forward(tp_, y);
  Tensor logits = s.alloc(y.dtype, {y.dim(0), y.dim(1), tp_.local(cfg_.vocab_size)});
  linear_forward(s.ctx, rows_of(y), store_.value(out_proj_), Tensor(), Activation::none,
                 rows_of(logits));
  return logits;
}

void Transformer::loss_forward(Step& s, const Tensor& logits, const Tensor& loss, const Tensor& nll) {
  if (!tp_.active()) {
    cross_entropy_forward(s.ctx, logits, targets_, kPadId, cfg_.label_smoothing, loss, nll, lse_);
    return;
  }
  // Vocabulary-parallel: each rank's softmax statistics of its slice, gathered (3 numbers per
  // position and rank) and combined — the logits themselves never leave the rank.
  const int64_t n = logits.dim(0);
  Tensor stats = s.alloc(lse_.dtype, {n, 3});
  cross_entropy_partial_stats(s.ctx, logits, targets_, kPadId, tp_.first(cfg_.vocab_size), stats);
  Tensor all = s.alloc(lse_.dtype, {int64_t(tp_.size), n, 3});
  all_gather_tp(tp_, stats, all);
  cross_entropy_combine_stats(s.ctx, all, targets_, kPadId, cfg_.vocab_size, cfg_.label_smoothing,
                              loss, nll, lse_);
}

int64_t Transformer::count_correct(Step& s, const Tensor& device_logits, const std::vector<int32_t>& gold) {
  // Counted on the host (evaluation only): device or reduced-precision logits are copied first.
  Buffer staged;
  Tensor logits = device_logits;
  if (logits.device != Device::cpu || (logits.dtype != DType::f32 && logits.dtype != DType::f64)) {
    staged = host_copy(device_logits);
    logits = staged.tensor().view({device_logits.dim(0), device_logits.dim(1)});
  }
  const int64_t n = logits.dim(0), v = logits.dim(1), first = tp_.first(cfg_.vocab_size);
  // Per position: the best logit of this rank's slice and its global id (ties: the lowest id,
  // as one argmax over the whole row gives).
  Buffer best_buffer(DType::f64, {n, 2});
  const Tensor best = best_buffer.tensor();
  double* b = best.as<double>();
  for (int64_t r = 0; r < n; ++r) {
    int64_t arg = 0;
    double max = 0;
    for (int64_t j = 0; j < v; ++j) {
      const double x = logits.dtype == DType::f64 ? logits.as<double>()[r * v + j]
                                                  : double(logits.as<float>()[r * v + j]);
      if (j == 0 || x > max) max = x, arg = j;
    }
    b[2 * r] = max;
    b[2 * r + 1] = double(first + arg);
  }
  Buffer all_buffer;
  Tensor all = best;
  if (tp_.active()) {
    TFM_CHECK(tp_.host_group != nullptr, "model: counting accuracy under TP needs the host group");
    all_buffer = Buffer(DType::f64, {int64_t(tp_.size), n, 2});
    all = all_buffer.tensor();
    tp_.host_group->all_gather(best, all);
  }
  int64_t correct = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (gold[size_t(r)] == kPadId) continue;
    double max = 0, arg = 0;
    for (int p = 0; p < tp_.size; ++p) {  // slices in vocabulary order: strict > keeps the lowest id
      const double* e = all.as<double>() + (int64_t(p) * n + r) * 2;
      if (p == 0 || e[0] > max) max = e[0], arg = e[1];
    }
    correct += int64_t(arg) == gold[size_t(r)];
  }
  return correct;
}

void Transformer::gradients_ready(int first, int end) const {
  if (!grad_ready_) return;
  for (int i = first; i < end; ++i) grad_ready_(i);
}

LossStats Transformer::forward(Step& s, const Batch& batch, Tensor* logits_out) {
  TFM_CHECK(store_.allocated(), "model: parameters not allocated");
  TFM_CHECK(s.ctx.device == store_.device(), "model: the parameters are on ",
            device_name(store_.device()), " but the step runs on ", device_name(s.ctx.device));
  const int64_t b = batch.size, ts = batch.src_len, tt = batch.tgt_len;
  src_ = ids_for(s, batch.src, {b, ts});
  src_lengths_ = ids_for(s, batch.src_lengths, {b});
  tgt_in_ = ids_for(s, batch.tgt_in, {b, tt});
  tgt_lengths_ = ids_for(s, batch.tgt_lengths, {b});
  targets_ = ids_for(s, batch.tgt_out, {b * tt});

  memory_ = encode(s, src_, src_lengths_);
  Tensor logits = rows_of(decode_logits(s, tgt_in_, tgt_lengths_, memory_, src_lengths_));
  const DType st = stats_dtype(logits.dtype);
  Tensor loss = s.alloc(st, {b * tt}), nll = s.alloc(st, {b * tt});
  lse_ = s.alloc(st, {b * tt});
  loss_forward(s, logits, loss, nll);
  *logits_out = logits;

  LossStats stats;
  stats.loss_sum = host_sum(loss);
  stats.nll_sum = host_sum(nll);
  for (int32_t len : batch.tgt_lengths) stats.tokens += len;
  return stats;
}

// Backward runs the layers in reverse and reports each layer's parameters to the gradient-ready
// hook as soon as they are final, so their all-reduce overlaps the rest of backward. The
// embedding tables are reported last (a shared table is still receiving gradient until the
// source embedding's backward).
void Transformer::backward(Step& s, const Tensor& logits, double grad_scale) {
  const int64_t vocab = cfg_.vocab_size;
  cross_entropy_backward(s.ctx, logits, targets_, lse_, kPadId, cfg_.label_smoothing, grad_scale,
                         logits, tp_.first(vocab), vocab);
  Tensor dy = s.arena.alloc_like(decoder_out_);
  linear_backward(s.ctx, rows_of(decoder_out_), store_.value(out_proj_), Tensor(),
                  Activation::none, logits, rows_of(dy), store_.grad(out_proj_), Tensor());
  copy_to_tp_region_backward(tp_, dy);  // each rank's dy covers its vocabulary slice only
  if (cfg_.sharing == EmbeddingSharing::none) gradients_ready(out_proj_, out_proj_ + 1);
  if (decoder_norm_) dy = decoder_norm_->backward(s, dy);
  Tensor dmemory = s.arena.alloc_like(memory_);
  fill_zero(s.ctx, dmemory);
  for (size_t l = decoder_.size(); l-- > 0;) {
    dy = decoder_[l]->backward(s, dy, dmemory);
    gradients_ready(decoder_params_[l].first, decoder_params_[l].second);
  }
  // The encoder output entered every cross-attention's (column-parallel) K/V projection: the
  // partial sums of all decoder layers are reduced at once.
  copy_to_tp_region_backward(tp_, dmemory);
  tgt_embed_->backward(s, dy);
  Tensor dx = dmemory;
  if (encoder_norm_) dx = encoder_norm_->backward(s, dx);
  for (size_t l = encoder_.size(); l-- > 0;) {
    dx = encoder_[l]->backward(s, dx);
    gradients_ready(encoder_params_[l].first, encoder_params_[l].second);
  }
  src_embed_->backward(s, dx);
  // Everything not yet reported: the tables and the final norms of a pre-norm stack.
  if (grad_ready_) {
    std::vector<bool> reported(store_.size(), false);
    for (const auto& ranges : {encoder_params_, decoder_params_})
      for (const auto& [first, end] : ranges)
        for (int i = first; i < end; ++i) reported[size_t(i)] = true;
    if (cfg_.sharing == EmbeddingSharing::none) reported[size_t(out_proj_)] = true;
    for (size_t i = 0; i < reported.size(); ++i)
      if (!reported[i]) grad_ready_(int(i));
  }
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
  stats.correct = count_correct(s, logits, batch.tgt_out);
  return stats;
}

}  // namespace tfm
