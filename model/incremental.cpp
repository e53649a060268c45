// Incremental decoding with cached keys and values (model/transformer.h, DecoderState).
//
// One decode_step runs the decoder for a single position t on every row, with the math of the
// training forward (model/layers.cpp) restricted to that position:
//   x   = E[token]·√D + PE(t)                                   (embedding_forward, offset t)
//   per layer, post-norm (the paper):
//     h1 = LN1(x + SelfAttn(x))      SelfAttn: q, k, v = x·W_qkvᵀ + b; k, v → cache[:, t];
//                                               softmax(q·Kᵀ/√d_k)·V over cache[:, 0..t]
//     h2 = LN2(h1 + CrossAttn(h1))   CrossAttn: q = h1·W_qᵀ + b over the cached encoder K, V
//     y  = LN3(h2 + FFN(h2))
//   pre-norm: h1 = x + SelfAttn(LN1(x)); h2 = h1 + CrossAttn(LN2(h1)); y = h2 + FFN(LN3(h2)),
//   then the final decoder norm after the last layer;
//   log-probabilities = log_softmax(y·Eᵀ) with the (tied) output projection.
// Causality comes for free: the cache holds positions ≤ t only, and key_lengths = t + 1 hides
// the unfilled tail, so the op runs non-causal with Tq = 1.
//
// The kernels are called directly, with the parameters found by name in the ParameterStore:
// the layer classes keep forward/backward state that decoding does not need.
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/attention/attention.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/embedding/embedding.h"
#include "kernels/layernorm/layernorm.h"
#include "kernels/linear/linear.h"
#include "model/transformer.h"

namespace tfm {

namespace {

DType stats_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }
Tensor rows_of(const Tensor& t) { return t.view({t.numel() / t.dim(-1), t.dim(-1)}); }
Tensor host_ids(const std::vector<int32_t>& ids, std::initializer_list<int64_t> dims) {
  return Tensor(const_cast<int32_t*>(ids.data()), DType::i32, Device::cpu, dims);
}

// Byte address of row r (of `row_bytes`) inside a buffer.
char* row_ptr(const Tensor& t, int64_t r, size_t row_bytes) {
  return static_cast<char*>(t.data) + size_t(r) * row_bytes;
}

DecoderState::LayerIndex layer_index(const ParameterStore& store, int64_t layer) {
  const std::string p = "decoder.layers." + std::to_string(layer) + ".";
  DecoderState::LayerIndex ix;
  // q, k, v are registered back to back (model/layers.cpp): q's index starts the fused block.
  ix.self_qkv_w = store.index(p + "self_attn.q_proj.weight");
  ix.self_qkv_b = store.index(p + "self_attn.q_proj.bias");
  ix.self_out_w = store.index(p + "self_attn.out_proj.weight");
  ix.self_out_b = store.index(p + "self_attn.out_proj.bias");
  ix.cross_q_w = store.index(p + "cross_attn.q_proj.weight");
  ix.cross_q_b = store.index(p + "cross_attn.q_proj.bias");
  ix.cross_out_w = store.index(p + "cross_attn.out_proj.weight");
  ix.cross_out_b = store.index(p + "cross_attn.out_proj.bias");
  ix.fc1_w = store.index(p + "ffn.fc1.weight");
  ix.fc1_b = store.index(p + "ffn.fc1.bias");
  ix.fc2_w = store.index(p + "ffn.fc2.weight");
  ix.fc2_b = store.index(p + "ffn.fc2.bias");
  for (int n = 0; n < 3; ++n) {
    ix.norm_g[n] = store.index(p + "norm" + std::to_string(n + 1) + ".weight");
    ix.norm_b[n] = store.index(p + "norm" + std::to_string(n + 1) + ".bias");
  }
  // The fused views below rely on that adjacency; fused_value checks it, do it once up front.
  (void)store.fused_value(ix.self_qkv_w, 3);
  (void)store.fused_value(ix.cross_q_w + 1, 2);
  return ix;
}

// Forward-only building blocks on [rows, C] matrices, scratch from the step's arena.
struct Ops {
  const Context& ctx;
  Arena& arena;
  const ParameterStore& store;
  double eps;

  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b,
                Activation act = Activation::none) {
    Tensor y = arena.alloc(x.dtype, {x.dim(0), w.dim(0)});
    linear_forward(ctx, x, w, b, act, y);
    return y;
  }
  Tensor norm(const Tensor& x, int gamma, int beta) {
    Tensor y = arena.alloc_like(x);
    Tensor mean = arena.alloc(stats_dtype(x.dtype), {x.dim(0)});
    Tensor rstd = arena.alloc(stats_dtype(x.dtype), {x.dim(0)});
    layer_norm_forward(ctx, x, store.value(gamma), store.value(beta), eps, y, mean, rstd);
    return y;
  }
  Tensor sum(const Tensor& a, const Tensor& b) {
    Tensor y = arena.alloc_like(a);
    add(ctx, a, b, y);
    return y;
  }
};

}  // namespace

void log_softmax_rows(const Tensor& logits, const Tensor& out) {
  TFM_CHECK(logits.device == Device::cpu && out.device == Device::cpu,
            "log_softmax_rows: host tensors only");
  TFM_CHECK(logits.numel() == out.numel() && logits.dtype == out.dtype,
            "log_softmax_rows: out ", out.shape_str(), " ", dtype_name(out.dtype),
            " does not match logits ", logits.shape_str(), " ", dtype_name(logits.dtype));
  const int64_t v = logits.dim(-1), n = logits.numel() / v;
  auto run = [&](auto* in, auto* o) {
    for (int64_t r = 0; r < n; ++r) {
      const auto* x = in + r * v;
      auto* y = o + r * v;
      double m = x[0];
      for (int64_t j = 1; j < v; ++j) m = std::max(m, double(x[j]));
      double s = 0;
      for (int64_t j = 0; j < v; ++j) s += std::exp(double(x[j]) - m);
      const double lse = m + std::log(s);
      for (int64_t j = 0; j < v; ++j) y[j] = decltype(+y[j])(double(x[j]) - lse);
    }
  };
  if (logits.dtype == DType::f64) run(logits.as<double>(), out.as<double>());
  else run(logits.as<float>(), out.as<float>());
}

void DecoderState::reorder(const std::vector<int64_t>& rows) {
  const int64_t n = int64_t(rows.size());
  TFM_CHECK(n >= 1, "decoder state reorder: no rows left");
  for (int64_t i = 0; i < n; ++i)
    TFM_CHECK(rows[size_t(i)] >= 0 && rows[size_t(i)] < rows_, "decoder state reorder: row ", i,
              " takes old row ", rows[size_t(i)], ", outside [0, ", rows_, ")");
  std::vector<int32_t> src_lengths(static_cast<size_t>(n));
  std::vector<int64_t> sentence(static_cast<size_t>(n));
  // Cross-attention keys depend on the source sentence only: when every row keeps its sentence
  // (beam search within a fixed set of sentences) they stay where they are.
  bool same_sources = n == rows_;
  for (int64_t i = 0; i < n; ++i) {
    sentence[size_t(i)] = sentence_[size_t(rows[size_t(i)])];
    src_lengths[size_t(i)] = src_lengths_[size_t(rows[size_t(i)])];
    same_sources = same_sources && sentence[size_t(i)] == sentence_[size_t(i)];
  }
  const size_t esize = dtype_size(dtype_);
  // Gathers rows into the spare buffer (only the first `used` bytes of each row), then swaps.
  auto gather = [&](std::vector<Buffer>& live, std::vector<Buffer>& spare, int64_t row_elems,
                    int64_t used_elems) {
    for (size_t l = 0; l < live.size(); ++l) {
      if (!spare[l].tensor().defined() || spare[l].tensor().dim(0) < n)
        spare[l] = Buffer(dtype_, {n, row_elems}, device_);
      const size_t row_bytes = size_t(row_elems) * esize, used = size_t(used_elems) * esize;
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(row_ptr(spare[l], i, row_bytes), row_ptr(live[l], rows[size_t(i)], row_bytes),
                    used);
      std::swap(live[l], spare[l]);
    }
  };
  gather(self_kv_, self_spare_, capacity_ * width_, position_ * width_);
  if (!same_sources) gather(cross_kv_, cross_spare_, src_len_ * width_, src_len_ * width_);
  if (log_probs_.tensor().dim(0) < n)
    log_probs_ = Buffer(dtype_, {n, log_probs_.tensor().dim(1)}, device_);
  rows_ = n;
  src_lengths_ = std::move(src_lengths);
  sentence_ = std::move(sentence);
}

DecoderState Transformer::start_decoding(const Context& ctx, Arena& arena, const Tensor& src,
                                         const Tensor& src_lengths, int64_t rows_per_sentence,
                                         int64_t capacity) {
  TFM_CHECK(store_.allocated(), "start_decoding: parameters not allocated");
  TFM_CHECK(ctx.device == Device::cpu, "start_decoding: the CUDA path is not built yet");
  TFM_CHECK(!tp_.active(), "start_decoding: decoding runs on a whole model (TP = 1), not on a "
            "tensor-parallel shard; load the checkpoint, which holds the full tensors");
  TFM_CHECK(src.rank == 2 && src_lengths.rank == 1 && src_lengths.dim(0) == src.dim(0),
            "start_decoding: src must be [B, Ts] and src_lengths [B], got ", src.shape_str(),
            " and ", src_lengths.shape_str());
  TFM_CHECK(rows_per_sentence >= 1, "start_decoding: rows_per_sentence = ", rows_per_sentence,
            " must be ≥ 1");
  TFM_CHECK(capacity >= 1, "start_decoding: capacity = ", capacity, " must be ≥ 1");
  const int64_t b = src.dim(0), ts = src.dim(1), d = cfg_.d_model, k = rows_per_sentence;

  DecoderState st;
  st.device_ = ctx.device;
  st.dtype_ = store_.dtype();
  st.rows_ = b * k;
  st.capacity_ = capacity;
  st.src_len_ = ts;
  st.width_ = 2 * d;
  for (int64_t l = 0; l < cfg_.decoder_layers; ++l) st.layers_.push_back(layer_index(store_, l));
  if (cfg_.norm == NormPlacement::pre) {
    st.final_norm_g_ = store_.index("decoder.norm.weight");
    st.final_norm_b_ = store_.index("decoder.norm.bias");
  }
  const int32_t* lengths = src_lengths.as<int32_t>();
  for (int64_t i = 0; i < b; ++i) {
    TFM_CHECK(lengths[i] >= 1 && lengths[i] <= ts, "start_decoding: src_lengths[", i, "] = ",
              lengths[i], " is outside [1, ", ts, "]");
    for (int64_t j = 0; j < k; ++j) {
      st.src_lengths_.push_back(lengths[i]);
      st.sentence_.push_back(i);
    }
  }

  arena.reset();
  Step s{ctx, arena, /*training=*/false, 0};
  Tensor memory = encode(s, src, src_lengths);  // [B, Ts, D]
  const size_t row_bytes = size_t(ts * 2 * d) * dtype_size(st.dtype_);
  for (const DecoderState::LayerIndex& ix : st.layers_) {
    // Cross-attention K, V of each sentence once, then copied to its k rows.
    Tensor kv = s.alloc(st.dtype_, {b, ts, 2 * d});
    linear_forward(ctx, rows_of(memory), store_.fused_value(ix.cross_q_w + 1, 2),
                   store_.fused_value(ix.cross_q_b + 1, 2), Activation::none, rows_of(kv));
    Buffer cross(st.dtype_, {b * k, ts * 2 * d}, ctx.device);
    for (int64_t i = 0; i < b * k; ++i)
      std::memcpy(row_ptr(cross, i, row_bytes), row_ptr(kv, i / k, row_bytes), row_bytes);
    st.cross_kv_.push_back(std::move(cross));
    st.cross_spare_.emplace_back();
    st.self_kv_.emplace_back(st.dtype_, std::initializer_list<int64_t>{b * k, capacity * 2 * d},
                             ctx.device);
    st.self_spare_.emplace_back();
  }
  st.log_probs_ = Buffer(st.dtype_, {b * k, cfg_.vocab_size}, ctx.device);
  return st;
}

Tensor Transformer::decode_step(const Context& ctx, Arena& arena, DecoderState& st,
                                const std::vector<int32_t>& tokens) {
  TFM_CHECK(int64_t(tokens.size()) == st.rows_, "decode_step: ", tokens.size(),
            " tokens for a state of ", st.rows_, " rows");
  TFM_CHECK(st.position_ < st.capacity_, "decode_step: position ", st.position_,
            " is past the cache's capacity of ", st.capacity_, " positions");
  TFM_CHECK(int64_t(st.layers_.size()) == cfg_.decoder_layers && st.dtype_ == store_.dtype(),
            "decode_step: the state was started by a different model");
  const int64_t rows = st.rows_, d = cfg_.d_model, t = st.position_, dk = cfg_.head_dim();
  const DType dt = st.dtype_;
  const size_t esize = dtype_size(dt);
  arena.reset();
  Ops op{ctx, arena, store_, cfg_.layer_norm_eps};

  Tensor x = arena.alloc(dt, {rows, 1, d});
  embedding_forward(ctx, host_ids(tokens, {rows, 1}), store_.value(tgt_table_),
                    std::sqrt(double(d)), x, /*position_offset=*/t);
  x = x.view({rows, d});

  // Self-attention sees positions 0..t; cross-attention the row's source tokens.
  const std::vector<int32_t> self_lengths(static_cast<size_t>(rows), int32_t(t + 1));
  const Tensor self_len = host_ids(self_lengths, {rows});
  const Tensor cross_len = host_ids(st.src_lengths_, {rows});
  AttentionArgs self_args;
  self_args.heads = cfg_.heads;
  self_args.head_dim = dk;
  self_args.q_col = 0;  // q is the [rows, 1, 3·D] projection; K, V live in the cache
  self_args.k_col = 0;
  self_args.v_col = d;
  AttentionArgs cross_args = self_args;  // q [rows, 1, D]; cross K, V [rows, Ts, 2·D]
  const bool pre = cfg_.norm == NormPlacement::pre;

  for (size_t l = 0; l < st.layers_.size(); ++l) {
    const DecoderState::LayerIndex& ix = st.layers_[l];
    // Masked self-attention over the cache.
    Tensor in = pre ? op.norm(x, ix.norm_g[0], ix.norm_b[0]) : x;
    Tensor qkv = op.linear(in, store_.fused_value(ix.self_qkv_w, 3),
                           store_.fused_value(ix.self_qkv_b, 3));  // [rows, 3·D]
    const Tensor cache = st.self_kv_[l].tensor().rows(0, rows).view({rows, st.capacity_, 2 * d});
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(row_ptr(cache, r * st.capacity_ + t, size_t(2 * d) * esize),
                  row_ptr(qkv, r, size_t(3 * d) * esize) + size_t(d) * esize,
                  size_t(2 * d) * esize);
    Tensor attn = arena.alloc(dt, {rows, 1, d});
    Tensor lse = arena.alloc(stats_dtype(dt), {rows, cfg_.heads, 1});
    attention_forward(ctx, self_args, qkv.view({rows, 1, 3 * d}), cache, cache, self_len, attn,
                      lse);
    Tensor a = op.linear(attn.view({rows, d}), store_.value(ix.self_out_w),
                         store_.value(ix.self_out_b));
    Tensor h1 = pre ? op.sum(x, a) : op.norm(op.sum(x, a), ix.norm_g[0], ix.norm_b[0]);

    // Cross-attention over the encoder output's cached keys and values.
    in = pre ? op.norm(h1, ix.norm_g[1], ix.norm_b[1]) : h1;
    Tensor q = op.linear(in, store_.value(ix.cross_q_w), store_.value(ix.cross_q_b));
    const Tensor mem = st.cross_kv_[l].tensor().rows(0, rows).view({rows, st.src_len_, 2 * d});
    attention_forward(ctx, cross_args, q.view({rows, 1, d}), mem, mem, cross_len, attn, lse);
    Tensor c = op.linear(attn.view({rows, d}), store_.value(ix.cross_out_w),
                         store_.value(ix.cross_out_b));
    Tensor h2 = pre ? op.sum(h1, c) : op.norm(op.sum(h1, c), ix.norm_g[1], ix.norm_b[1]);

    // Position-wise feed-forward.
    in = pre ? op.norm(h2, ix.norm_g[2], ix.norm_b[2]) : h2;
    Tensor hidden = op.linear(in, store_.value(ix.fc1_w), store_.value(ix.fc1_b), Activation::relu);
    Tensor f = op.linear(hidden, store_.value(ix.fc2_w), store_.value(ix.fc2_b));
    x = pre ? op.sum(h2, f) : op.norm(op.sum(h2, f), ix.norm_g[2], ix.norm_b[2]);
  }
  if (pre) x = op.norm(x, st.final_norm_g_, st.final_norm_b_);

  // Pre-softmax projection with the (shared) embedding matrix, no bias.
  Tensor logits = op.linear(x, store_.value(out_proj_), Tensor());  // [rows, V]
  const Tensor out = st.log_probs_.tensor().rows(0, rows);
  log_softmax_rows(logits, out);
  ++st.position_;
  return out;
}

}  // namespace tfm
