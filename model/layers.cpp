#include "model/layers.h"

#include "kernels/dropout/dropout.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/layernorm/layernorm.h"
#include "kernels/linear/linear.h"

namespace tfm {

namespace {
// Layer-norm statistics and attention log-sum-exps are kept in at least fp32.
DType stats_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }
// [B, T, C] viewed as [B·T, C] rows for the GEMMs.
Tensor rows_of(const Tensor& t) { return t.view({t.numel() / t.dim(-1), t.dim(-1)}); }
}  // namespace

LinearParams add_linear(ParameterStore& store, const std::string& name, int64_t in, int64_t out,
                        Split split) {
  LinearParams p;
  p.weight = store.add(name + ".weight", {out, in}, Init::xavier_uniform, split);
  p.bias = store.add(name + ".bias", {out}, Init::zeros,
                     split == Split::rows ? Split::rows : Split::replicated);
  return p;
}

namespace {
// A row-parallel layer's bias is added by TP rank 0 alone: the all-reduce of the partial sums
// then adds it exactly once. Every rank still computes its gradient (from the replicated output
// gradient), so the replicated copies stay equal.
Tensor row_parallel_bias(const ParameterStore& store, const TensorParallel& tp, int bias) {
  return tp.rank == 0 ? store.value(bias) : Tensor();
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// MultiHeadAttention

MultiHeadAttention::MultiHeadAttention(ParameterStore& store, const std::string& name,
                                       const ModelConfig& cfg, const TensorParallel& tp,
                                       bool self_attention, SiteCounter& sites)
    : store_(store), cfg_(cfg), tp_(tp), self_(self_attention), site_(sites.take()) {
  const int64_t d = cfg.d_model;
  // Q, K, V weights registered back to back (then their biases), so the flat buffer holds them
  // as one [3·D, D] matrix and one [3·D] bias: one GEMM projects all three. Under TP each is
  // split by rows (this rank's heads), and the local parts are still adjacent: [3·D/tp, D].
  q_weight_ = store.add(name + ".q_proj.weight", {d, d}, Init::xavier_uniform, Split::rows);
  store.add(name + ".k_proj.weight", {d, d}, Init::xavier_uniform, Split::rows);
  store.add(name + ".v_proj.weight", {d, d}, Init::xavier_uniform, Split::rows);
  q_bias_ = store.add(name + ".q_proj.bias", {d}, Init::zeros, Split::rows);
  store.add(name + ".k_proj.bias", {d}, Init::zeros, Split::rows);
  store.add(name + ".v_proj.bias", {d}, Init::zeros, Split::rows);
  LinearParams out = add_linear(store, name + ".out_proj", d, d, Split::cols);
  out_weight_ = out.weight;
  out_bias_ = out.bias;
}

Tensor MultiHeadAttention::forward(Step& s, const Tensor& x_in, const Tensor& memory,
                                   const Tensor& key_lengths, bool causal) {
  // d: this rank's share of the model width (its heads' columns); the whole width under TP = 1.
  const int64_t batch = x_in.dim(0), tq = x_in.dim(1), d = tp_.local(cfg_.d_model);
  const DType dt = x_in.dtype;
  const Tensor x = copy_to_tp_region_forward(tp_, x_in);
  x_ = x;
  key_lengths_ = key_lengths;
  args_ = AttentionArgs{};
  args_.heads = tp_.local(cfg_.heads);
  args_.head_dim = cfg_.head_dim();
  args_.causal = causal;
  // The probabilities' dropout mask is indexed by global head, so it does not depend on TP.
  const int64_t tk = self_ ? tq : memory.dim(1);
  args_.dropout = dropout_column_block(s.dropout(cfg_.attention_dropout, site_),
                                       args_.heads * tq * tk, cfg_.heads * tq * tk,
                                       tp_.first(cfg_.heads) * tq * tk);
  if (self_) {
    // qkv [B, T, 3·d]: Q in columns [0, d), K in [d, 2·d), V in [2·d, 3·d).
    q_ = s.alloc(dt, {batch, tq, 3 * d});
    linear_forward(s.ctx, rows_of(x), store_.fused_value(q_weight_, 3),
                   store_.fused_value(q_bias_, 3), Activation::none, rows_of(q_));
    kv_ = q_;
    args_.q_col = 0;
    args_.k_col = d;
    args_.v_col = 2 * d;
  } else {
    memory_ = memory;
    q_ = s.alloc(dt, {batch, tq, d});
    linear_forward(s.ctx, rows_of(x), store_.value(q_weight_), store_.value(q_bias_),
                   Activation::none, rows_of(q_));
    // kv [B, Tk, 2·d]: K in columns [0, d), V in [d, 2·d).
    kv_ = s.alloc(dt, {batch, tk, 2 * d});
    linear_forward(s.ctx, rows_of(memory), store_.fused_value(q_weight_ + 1, 2),
                   store_.fused_value(q_bias_ + 1, 2), Activation::none, rows_of(kv_));
    args_.q_col = 0;
    args_.k_col = 0;
    args_.v_col = d;
  }
  attn_ = s.alloc(dt, {batch, tq, d});
  lse_ = s.alloc(stats_dtype(dt), {batch, args_.heads, tq});
  attention_forward(s.ctx, args_, q_, kv_, kv_, key_lengths, attn_, lse_);
  Tensor y = s.alloc(dt, {batch, tq, cfg_.d_model});
  linear_forward(s.ctx, rows_of(attn_), store_.value(out_weight_),
                 row_parallel_bias(store_, tp_, out_bias_), Activation::none, rows_of(y));
  reduce_from_tp_region_forward(tp_, y);
  return y;
}

Tensor MultiHeadAttention::backward(Step& s, const Tensor& dy_in, const Tensor& dmemory) {
  const Tensor dy = reduce_from_tp_region_backward(tp_, dy_in);
  Tensor dattn = s.arena.alloc_like(attn_);
  linear_backward(s.ctx, rows_of(attn_), store_.value(out_weight_), Tensor(), Activation::none,
                  rows_of(dy), rows_of(dattn), store_.grad(out_weight_), store_.grad(out_bias_));
  Tensor dx = s.arena.alloc_like(x_);
  if (self_) {
    Tensor dqkv = s.arena.alloc_like(q_);
    attention_backward(s.ctx, args_, q_, kv_, kv_, key_lengths_, attn_, lse_, dattn, dqkv, dqkv,
                       dqkv);
    linear_backward(s.ctx, rows_of(x_), store_.fused_value(q_weight_, 3), Tensor(),
                    Activation::none, rows_of(dqkv), rows_of(dx), store_.fused_grad(q_weight_, 3),
                    store_.fused_grad(q_bias_, 3));
  } else {
    Tensor dq = s.arena.alloc_like(q_), dkv = s.arena.alloc_like(kv_);
    attention_backward(s.ctx, args_, q_, kv_, kv_, key_lengths_, attn_, lse_, dattn, dq, dkv, dkv);
    linear_backward(s.ctx, rows_of(x_), store_.value(q_weight_), Tensor(), Activation::none,
                    rows_of(dq), rows_of(dx), store_.grad(q_weight_), store_.grad(q_bias_));
    // Every decoder layer attends to the same encoder output: its gradient is a sum.
    linear_backward(s.ctx, rows_of(memory_), store_.fused_value(q_weight_ + 1, 2), Tensor(),
                    Activation::none, rows_of(dkv), rows_of(dmemory),
                    store_.fused_grad(q_weight_ + 1, 2), store_.fused_grad(q_bias_ + 1, 2),
                    /*accumulate_dx=*/true);
  }
  copy_to_tp_region_backward(tp_, dx);
  return dx;
}

// ---------------------------------------------------------------------------------------------
// FeedForward

FeedForward::FeedForward(ParameterStore& store, const std::string& name, const ModelConfig& cfg,
                         const TensorParallel& tp, SiteCounter& sites)
    : store_(store), cfg_(cfg), tp_(tp), site_(sites.take()) {
  fc1_ = add_linear(store, name + ".fc1", cfg.d_model, cfg.d_ff, Split::rows);
  fc2_ = add_linear(store, name + ".fc2", cfg.d_ff, cfg.d_model, Split::cols);
}

// The hidden units' dropout mask is indexed by global unit, so it does not depend on TP.
DropoutSpec FeedForward::hidden_dropout(const Step& s) const {
  return dropout_column_block(s.dropout(cfg_.relu_dropout, site_), tp_.local(cfg_.d_ff), cfg_.d_ff,
                              tp_.first(cfg_.d_ff));
}

Tensor FeedForward::forward(Step& s, const Tensor& x_in) {
  const Tensor x = copy_to_tp_region_forward(tp_, x_in);
  x_ = x;
  const int64_t rows = x.numel() / cfg_.d_model;
  hidden_ = s.alloc(x.dtype, {rows, tp_.local(cfg_.d_ff)});
  linear_forward(s.ctx, rows_of(x), store_.value(fc1_.weight), store_.value(fc1_.bias),
                 Activation::relu, hidden_);
  // Dropped elements become 0, kept ones stay positive: hidden_ still marks where ReLU was
  // active, so fc1's backward can mask with it.
  dropout_forward(s.ctx, hidden_, hidden_, hidden_dropout(s));
  Tensor y = s.arena.alloc_like(x);
  linear_forward(s.ctx, hidden_, store_.value(fc2_.weight),
                 row_parallel_bias(store_, tp_, fc2_.bias), Activation::none, rows_of(y));
  reduce_from_tp_region_forward(tp_, y);
  return y;
}

Tensor FeedForward::backward(Step& s, const Tensor& dy_in) {
  const Tensor dy = reduce_from_tp_region_backward(tp_, dy_in);
  Tensor dhidden = s.arena.alloc_like(hidden_);
  linear_backward(s.ctx, hidden_, store_.value(fc2_.weight), Tensor(), Activation::none,
                  rows_of(dy), dhidden, store_.grad(fc2_.weight), store_.grad(fc2_.bias));
  dropout_backward(s.ctx, dhidden, dhidden, hidden_dropout(s));
  Tensor dx = s.arena.alloc_like(x_);
  linear_backward(s.ctx, rows_of(x_), store_.value(fc1_.weight), hidden_, Activation::relu,
                  dhidden, rows_of(dx), store_.grad(fc1_.weight), store_.grad(fc1_.bias));
  copy_to_tp_region_backward(tp_, dx);
  return dx;
}

// ---------------------------------------------------------------------------------------------
// Residual (Add & Norm)

Residual::Residual(ParameterStore& store, const std::string& norm_name, const ModelConfig& cfg,
                   SiteCounter& sites)
    : store_(store), cfg_(cfg), site_(sites.take()) {
  gamma_ = store.add(norm_name + ".weight", {cfg.d_model}, Init::ones);
  beta_ = store.add(norm_name + ".bias", {cfg.d_model}, Init::zeros);
}

Tensor Residual::input(Step& s, const Tensor& x) {
  if (cfg_.norm == NormPlacement::post) return x;
  const int64_t rows = x.numel() / cfg_.d_model;
  normed_input_ = x;
  mean_ = s.alloc(stats_dtype(x.dtype), {rows});
  rstd_ = s.alloc(stats_dtype(x.dtype), {rows});
  Tensor y = s.arena.alloc_like(x);
  layer_norm_forward(s.ctx, rows_of(x), store_.value(gamma_), store_.value(beta_),
                     cfg_.layer_norm_eps, rows_of(y), mean_, rstd_);
  return y;
}

Tensor Residual::output(Step& s, const Tensor& x, const Tensor& f) {
  dropout_forward(s.ctx, f, f, s.dropout(cfg_.dropout, site_));
  Tensor sum = s.arena.alloc_like(x);
  add(s.ctx, x, f, sum);
  if (cfg_.norm == NormPlacement::pre) return sum;
  const int64_t rows = x.numel() / cfg_.d_model;
  normed_input_ = sum;
  mean_ = s.alloc(stats_dtype(x.dtype), {rows});
  rstd_ = s.alloc(stats_dtype(x.dtype), {rows});
  Tensor y = s.arena.alloc_like(x);
  layer_norm_forward(s.ctx, rows_of(sum), store_.value(gamma_), store_.value(beta_),
                     cfg_.layer_norm_eps, rows_of(y), mean_, rstd_);
  return y;
}

std::pair<Tensor, Tensor> Residual::output_backward(Step& s, const Tensor& dout) {
  Tensor dsum = dout;
  if (cfg_.norm == NormPlacement::post) {
    dsum = s.arena.alloc_like(dout);
    layer_norm_backward(s.ctx, rows_of(dout), rows_of(normed_input_), store_.value(gamma_), mean_,
                        rstd_, rows_of(dsum), store_.grad(gamma_), store_.grad(beta_));
  }
  // The sum x + Dropout(f) passes its gradient to both terms.
  Tensor df = s.arena.alloc_like(dsum);
  dropout_backward(s.ctx, dsum, df, s.dropout(cfg_.dropout, site_));
  return {dsum, df};
}

void Residual::input_backward(Step& s, const Tensor& d_input, const Tensor& dx) {
  if (cfg_.norm == NormPlacement::pre) {
    layer_norm_backward(s.ctx, rows_of(d_input), rows_of(normed_input_), store_.value(gamma_),
                        mean_, rstd_, rows_of(d_input), store_.grad(gamma_), store_.grad(beta_));
  }
  accumulate(s.ctx, dx, d_input);
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

LayerNorm::LayerNorm(ParameterStore& store, const std::string& name, const ModelConfig& cfg)
    : store_(store), eps_(cfg.layer_norm_eps) {
  gamma_ = store.add(name + ".weight", {cfg.d_model}, Init::ones);
  beta_ = store.add(name + ".bias", {cfg.d_model}, Init::zeros);
}

Tensor LayerNorm::forward(Step& s, const Tensor& x) {
  x_ = x;
  const int64_t rows = x.numel() / x.dim(-1);
  mean_ = s.alloc(stats_dtype(x.dtype), {rows});
  rstd_ = s.alloc(stats_dtype(x.dtype), {rows});
  Tensor y = s.arena.alloc_like(x);
  layer_norm_forward(s.ctx, rows_of(x), store_.value(gamma_), store_.value(beta_), eps_,
                     rows_of(y), mean_, rstd_);
  return y;
}

Tensor LayerNorm::backward(Step& s, const Tensor& dy) {
  Tensor dx = s.arena.alloc_like(dy);
  layer_norm_backward(s.ctx, rows_of(dy), rows_of(x_), store_.value(gamma_), mean_, rstd_,
                      rows_of(dx), store_.grad(gamma_), store_.grad(beta_));
  return dx;
}

}  // namespace tfm
