// CPU twin of multi-head scaled dot-product attention (kernels/attention/attention.h), and the
// dispatchers. This is the reference the CUDA twin is tested against, so it follows the
// definition step by step; per (batch b, head h) it materialises the Tq × Tk matrix (the CUDA
// twin does not):
//   S  = Q_h K_hᵀ / √d_k                      GEMM on the head's columns (row stride = width)
//   lse_i = log Σ_j exp(S_ij)                 over the keys query i sees (max-subtracted)
//   P  = exp(S − lse),  P' = P ∘ keep/(1 − p) dropout on the probabilities (Philox mask)
//   O_h = P' V_h
// Backward recomputes P from lse and regenerates the dropout mask:
//   dV_h = P'ᵀ dO_h;  dP = (dO_h V_hᵀ) ∘ keep/(1 − p)
//   dS = P ∘ (dP − D),  D_i = Σ_j P_ij dP_ij   (equal to dO_i · O_i, the form the CUDA twin uses;
//                                              here it comes straight from P, so `out` is only
//                                              checked for shape)
//   dQ_h = dS K_h / √d_k;  dK_h = dSᵀ Q_h / √d_k
// Dropout element ((b·H + h)·Tq + i)·Tk + j goes through dropout_element(), so a call holding
// heads [h0, h0 + H) of H_total (tensor parallelism; spec from dropout_column_block) draws the
// mask those heads have in the unsharded call.
// Keys at or past key_lengths[b] are invisible to every query of batch b, so the GEMMs run over
// the first L_b keys only, and rows L_b.. of dK_h and dV_h are written as zeros.
//
// Threading: the B·H (b, h) pairs are cut into contiguous blocks, one block per thread, each
// with its own scratch. One pair is computed by one thread in a fixed order, so results do not
// depend on the thread count; and a pair writes only its own head's columns of out, dq, dk, dv,
// so a fused dQKV buffer (dq, dk, dv one buffer at different column offsets) cannot race.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/core/parallel.h"
#include "kernels/gemm/gemm.h"

namespace tfm {

namespace {

// Sizes of one call, after validation. Widths are the row strides of the [B, T, W] tensors.
struct Dims {
  int64_t B = 0, Tq = 0, Tk = 0, H = 0, dk = 0, D = 0;  // D = H·d_k
  int64_t wq = 0, wk = 0, wv = 0;
};

DType accumulation_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

void expect_columns(const char* op, const char* arg, int64_t col, int64_t D, int64_t width) {
  TFM_CHECK(col >= 0 && col + D <= width, op, ": ", arg, " columns [", col, ", ", col + D,
            ") (heads·head_dim = ", D, ") do not fit its width ", width);
}

// Checks what forward and backward share: q, k, v layouts, masks, dropout, key_lengths.
Dims validate_inputs(const Context& ctx, const AttentionArgs& a, const Tensor& q, const Tensor& k,
                     const Tensor& v, const Tensor& key_lengths, const char* op) {
  expect_device(ctx, q, op, "q");
  expect_device(ctx, k, op, "k");
  expect_device(ctx, v, op, "v");
  expect_device(ctx, key_lengths, op, "key_lengths");
  TFM_CHECK(q.defined() && k.defined() && v.defined(), op, ": q, k and v are required");
  TFM_CHECK(q.rank == 3, op, ": q must be [B, Tq, W], got ", q.shape_str());
  TFM_CHECK(k.rank == 3, op, ": k must be [B, Tk, W], got ", k.shape_str());
  TFM_CHECK(v.rank == 3, op, ": v must be [B, Tk, W], got ", v.shape_str());
  expect_same_dtype(q, k, op, "k");
  expect_same_dtype(q, v, op, "v");
  TFM_CHECK(a.heads >= 1 && a.head_dim >= 1, op, ": heads (", a.heads, ") and head_dim (",
            a.head_dim, ") must be positive");
  Dims d;
  d.B = q.dim(0);
  d.Tq = q.dim(1);
  d.Tk = k.dim(1);
  d.H = a.heads;
  d.dk = a.head_dim;
  d.D = a.heads * a.head_dim;
  d.wq = q.dim(2);
  d.wk = k.dim(2);
  d.wv = v.dim(2);
  TFM_CHECK(k.dim(0) == d.B && v.dim(0) == d.B, op, ": batch sizes differ: q ", q.shape_str(),
            ", k ", k.shape_str(), ", v ", v.shape_str());
  TFM_CHECK(v.dim(1) == d.Tk, op, ": k ", k.shape_str(), " and v ", v.shape_str(),
            " have different key counts");
  TFM_CHECK(d.Tq >= 1 && d.Tk >= 1, op, ": needs at least one query and one key, got Tq = ",
            d.Tq, ", Tk = ", d.Tk);
  TFM_CHECK(!a.causal || d.Tq == d.Tk, op, ": the causal mask needs Tq == Tk, got Tq = ", d.Tq,
            ", Tk = ", d.Tk);
  expect_columns(op, "q", a.q_col, d.D, d.wq);
  expect_columns(op, "k", a.k_col, d.D, d.wk);
  expect_columns(op, "v", a.v_col, d.D, d.wv);
  TFM_CHECK(a.dropout.p >= 0.0f && a.dropout.p < 1.0f, op, ": dropout rate ", a.dropout.p,
            " is outside [0, 1)");
  // Under tensor parallelism the spec may describe this call's heads as a column block of the
  // full [B, H_total, Tq, Tk] probabilities (dropout_column_block). Both twins map each row's
  // base only, so a block must hold whole rows of Tk keys and lie inside its logical row.
  TFM_CHECK(a.dropout.block == 0 || (a.dropout.block % uint64_t(d.Tk) == 0 &&
                                     a.dropout.block_start + a.dropout.block <=
                                         a.dropout.block_stride),
            op, ": dropout column block ", a.dropout.block, " (start ", a.dropout.block_start,
            ", stride ", a.dropout.block_stride, ") is not a whole number of rows of Tk = ",
            d.Tk, " inside its logical row");
  TFM_CHECK(key_lengths.defined(), op, ": key_lengths [B] is required");
  expect_shape(key_lengths, {d.B}, op, "key_lengths");
  expect_dtype(key_lengths, DType::i32, op, "key_lengths");
  return d;
}

// key_lengths live in host memory on the CPU path; read before any parallel region, since an
// exception must not leave an OpenMP loop.
void check_key_lengths(const Tensor& key_lengths, int64_t Tk, const char* op) {
  const int32_t* len = key_lengths.as<int32_t>();
  for (int64_t b = 0; b < key_lengths.numel(); ++b)
    TFM_CHECK(len[b] >= 1 && len[b] <= Tk, op, ": key_lengths[", b, "] = ", len[b],
              " is outside [1, Tk = ", Tk, "]");
}

// When two gradients are one buffer, their column blocks must not overlap: each is written
// with =, and overlapping blocks would need accumulation (and would race across heads).
void expect_disjoint(const Tensor& x, int64_t x_col, const Tensor& y, int64_t y_col, int64_t D,
                     const char* op, const char* names) {
  if (x.data != y.data) return;
  TFM_CHECK(x_col + D <= y_col || y_col + D <= x_col, op, ": ", names,
            " are one buffer with overlapping column blocks [", x_col, ", ", x_col + D, ") and [",
            y_col, ", ", y_col + D, ")");
}

// Per-thread scratch of `per_slot` elements of T: from the context's arena when it has one
// (no allocation in the step), else a local vector.
template <class T>
class Scratch {
 public:
  Scratch(const Context& ctx, int64_t slots, int64_t per_slot) : per_slot_(per_slot) {
    size_t count = size_t(slots * per_slot);
    if (ctx.workspace) {
      TFM_CHECK(ctx.workspace->device() == Device::cpu,
                "attention: the CPU twin needs a host workspace arena");
      base_ = static_cast<T*>(ctx.workspace->alloc_bytes(count * sizeof(T)));
    } else {
      local_.resize(count);
      base_ = local_.data();
    }
  }
  T* slot(int64_t s) const { return base_ + s * per_slot_; }

 private:
  int64_t per_slot_;
  T* base_ = nullptr;
  std::vector<T> local_;
};

// Threads (= scratch slots) for a call: one per (b, h) pair up to OpenMP's thread count, and
// just one when the whole call is under ~2^16 multiply-adds, where forking a team costs more
// than it saves (decoding steps, tests). Either way each pair is computed the same way.
int64_t slot_count(const Dims& d) {
  const int64_t pairs = d.B * d.H;
  if (pairs * d.Tq * d.Tk * (d.dk + 1) < (int64_t(1) << 16)) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(pairs, omp_get_max_threads()));
}

// Calls body(slot, b, h) for every (b, h): contiguous blocks of pairs, block s on one thread.
template <class F>
void for_each_head(const Dims& d, int64_t slots, F&& body) {
  const int64_t pairs = d.B * d.H;
  auto block = [&](int64_t s) {
    for (int64_t i = pairs * s / slots; i < pairs * (s + 1) / slots; ++i)
      body(s, i / d.H, i % d.H);
  };
  if (slots == 1) return block(0);  // no parallel region for a single block (small calls)
  parallel_for(slots, block);
}

// mult[j] = keep(first + j) / (1 − p), or 0 when dropped, for j < n: the same mask as
// dropout_keep(), with Philox called once per four consecutive elements. first is a row base
// ((b·H + h)·Tq + i)·Tk; the row's n ≤ Tk elements are contiguous in the logical tensor too (a
// column block is a whole number of rows, checked in validate_inputs), so only the base is mapped.
template <class A>
void dropout_multipliers(const DropoutSpec& spec, uint64_t first, int64_t n, A* mult) {
  const A kept = A(1.0 / (1.0 - double(spec.p)));
  const uint32_t threshold = dropout_threshold(spec.p);
  const uint64_t e0 = dropout_element(spec, first);
  Philox4 block{};
  for (int64_t j = 0; j < n; ++j) {
    uint64_t e = e0 + uint64_t(j);
    if (j == 0 || (e & 3) == 0) block = philox4x32_10(spec.seed, e >> 2);
    mult[j] = block.x[e & 3] >= threshold ? kept : A(0);
  }
}

// Keys query i sees among the first L of its batch.
int64_t visible_keys(bool causal, int64_t i, int64_t L) { return causal ? std::min(i + 1, L) : L; }

template <class T>
void forward_cpu(const Context& ctx, const AttentionArgs& a, const Dims& d, const Tensor& q,
                 const Tensor& k, const Tensor& v, const int32_t* lengths, const Tensor& out,
                 const Tensor& lse) {
  using A = acc_t<T>;
  static_assert(std::is_same_v<A, T>, "scratch holds T and A alike: true for f32 and f64");
  const T scale = T(1.0 / std::sqrt(double(d.dk)));
  const int64_t slots = slot_count(d);
  // Per slot: the score/probability matrix [Tq, Tk] and one row of dropout multipliers [Tk].
  Scratch<T> scratch(ctx, slots, d.Tq * d.Tk + d.Tk);

  for_each_head(d, slots, [&](int64_t s, int64_t b, int64_t h) {
    const int64_t L = lengths[b];
    const T* qh = q.as<T>() + b * d.Tq * d.wq + a.q_col + h * d.dk;
    const T* kh = k.as<T>() + b * d.Tk * d.wk + a.k_col + h * d.dk;
    const T* vh = v.as<T>() + b * d.Tk * d.wv + a.v_col + h * d.dk;
    T* oh = out.as<T>() + b * d.Tq * d.D + h * d.dk;
    A* lse_bh = lse.as<A>() + (b * d.H + h) * d.Tq;
    T* S = scratch.slot(s);  // [Tq, Tk], first L columns used
    A* mult = S + d.Tq * d.Tk;

    cpu::gemm(GemmShape{false, true, d.Tq, L, d.dk, d.wq, d.wk, d.Tk}, scale, qh, kh, T(0), S);
    for (int64_t i = 0; i < d.Tq; ++i) {
      T* row = S + i * d.Tk;
      const int64_t n = visible_keys(a.causal, i, L);
      A mx = A(row[0]);
      for (int64_t j = 1; j < n; ++j) mx = std::max(mx, A(row[j]));
      A sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += std::exp(A(row[j]) - mx);
      const A row_lse = mx + std::log(sum);
      lse_bh[i] = row_lse;
      if (a.dropout.active())
        dropout_multipliers(a.dropout, uint64_t(((b * d.H + h) * d.Tq + i) * d.Tk), n, mult);
      for (int64_t j = 0; j < n; ++j) {
        A p = std::exp(A(row[j]) - row_lse);
        row[j] = T(a.dropout.active() ? p * mult[j] : p);
      }
      for (int64_t j = n; j < L; ++j) row[j] = T(0);  // causally hidden keys
    }
    cpu::gemm(GemmShape{false, false, d.Tq, d.dk, L, d.Tk, d.wv, d.D}, T(1), S, vh, T(0), oh);
  });
}

template <class T>
void backward_cpu(const Context& ctx, const AttentionArgs& a, const Dims& d, const Tensor& q,
                  const Tensor& k, const Tensor& v, const int32_t* lengths, const Tensor& lse,
                  const Tensor& dout, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  using A = acc_t<T>;
  static_assert(std::is_same_v<A, T>, "scratch holds T and A alike: true for f32 and f64");
  const T scale = T(1.0 / std::sqrt(double(d.dk)));
  const int64_t slots = slot_count(d);
  // Per slot: P [Tq, Tk], dP [Tq, Tk] (which becomes dS) and one row of multipliers [Tk].
  Scratch<T> scratch(ctx, slots, 2 * d.Tq * d.Tk + d.Tk);
  const int64_t wdq = dq.dim(2), wdk = dk.dim(2), wdv = dv.dim(2);

  for_each_head(d, slots, [&](int64_t s, int64_t b, int64_t h) {
    const int64_t L = lengths[b];
    const T* qh = q.as<T>() + b * d.Tq * d.wq + a.q_col + h * d.dk;
    const T* kh = k.as<T>() + b * d.Tk * d.wk + a.k_col + h * d.dk;
    const T* vh = v.as<T>() + b * d.Tk * d.wv + a.v_col + h * d.dk;
    const T* doh = dout.as<T>() + b * d.Tq * d.D + h * d.dk;
    const A* lse_bh = lse.as<A>() + (b * d.H + h) * d.Tq;
    T* dqh = dq.as<T>() + b * d.Tq * wdq + a.q_col + h * d.dk;
    T* dkh = dk.as<T>() + b * d.Tk * wdk + a.k_col + h * d.dk;
    T* dvh = dv.as<T>() + b * d.Tk * wdv + a.v_col + h * d.dk;
    T* P = scratch.slot(s);       // [Tq, Tk]: P, then P' (after dropout)
    T* dP = P + d.Tq * d.Tk;      // [Tq, Tk]: dP', then dS
    A* mult = dP + d.Tq * d.Tk;

    cpu::gemm(GemmShape{false, true, d.Tq, L, d.dk, d.wq, d.wk, d.Tk}, scale, qh, kh, T(0), P);
    cpu::gemm(GemmShape{false, true, d.Tq, L, d.dk, d.D, d.wv, d.Tk}, T(1), doh, vh, T(0), dP);
    for (int64_t i = 0; i < d.Tq; ++i) {
      T* p_row = P + i * d.Tk;
      T* dp_row = dP + i * d.Tk;
      const int64_t n = visible_keys(a.causal, i, L);
      if (a.dropout.active())
        dropout_multipliers(a.dropout, uint64_t(((b * d.H + h) * d.Tq + i) * d.Tk), n, mult);
      else
        std::fill(mult, mult + n, A(1));
      A D_i = 0;
      for (int64_t j = 0; j < n; ++j) {
        A p = std::exp(A(p_row[j]) - lse_bh[i]);
        A dp = A(dp_row[j]) * mult[j];  // gradient with respect to P (before dropout)
        p_row[j] = T(p);
        dp_row[j] = T(dp);
        D_i += p * dp;
      }
      for (int64_t j = 0; j < n; ++j) {
        A p = A(p_row[j]);
        dp_row[j] = T(p * (A(dp_row[j]) - D_i));  // dS
        p_row[j] = T(p * mult[j]);                 // P', for dV
      }
      for (int64_t j = n; j < L; ++j) p_row[j] = dp_row[j] = T(0);
    }
    // dV_h[:L] = P'ᵀ dO_h;  dQ_h = dS K_h[:L] / √d_k;  dK_h[:L] = dSᵀ Q_h / √d_k.
    cpu::gemm(GemmShape{true, false, L, d.dk, d.Tq, d.Tk, d.D, wdv}, T(1), P, doh, T(0), dvh);
    cpu::gemm(GemmShape{false, false, d.Tq, d.dk, L, d.Tk, d.wk, wdq}, scale, dP, kh, T(0), dqh);
    cpu::gemm(GemmShape{true, false, L, d.dk, d.Tq, d.Tk, d.wq, wdk}, scale, dP, qh, T(0), dkh);
    // Padding keys get no gradient, but their rows are ours to write.
    for (int64_t j = L; j < d.Tk; ++j) {
      std::fill(dkh + j * wdk, dkh + j * wdk + d.dk, T(0));
      std::fill(dvh + j * wdv, dvh + j * wdv + d.dk, T(0));
    }
  });
}

}  // namespace

void attention_forward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                       const Tensor& out, const Tensor& lse) {
  const char* op = "attention_forward";
  Dims d = validate_inputs(ctx, args, q, k, v, key_lengths, op);
  expect_device(ctx, out, op, "out");
  expect_device(ctx, lse, op, "lse");
  expect_shape(out, {d.B, d.Tq, d.D}, op, "out");
  expect_same_dtype(q, out, op, "out");
  expect_shape(lse, {d.B, d.H, d.Tq}, op, "lse");
  expect_dtype(lse, accumulation_dtype(q.dtype), op, "lse");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::attention_forward(ctx, args, q, k, v, key_lengths, out, lse);
#else
    no_cuda_twin(op);
#endif
  }
  check_key_lengths(key_lengths, d.Tk, op);
  dispatch_cpu_float(q.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    forward_cpu<T>(ctx, args, d, q, k, v, key_lengths.as<int32_t>(), out, lse);
  });
}

void attention_backward(const Context& ctx, const AttentionArgs& args, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& key_lengths,
                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                        const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const char* op = "attention_backward";
  Dims d = validate_inputs(ctx, args, q, k, v, key_lengths, op);
  const std::pair<const Tensor*, const char*> others[] = {
      {&out, "out"}, {&lse, "lse"}, {&dout, "dout"}, {&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}};
  for (auto [t, name] : others) {
    expect_device(ctx, *t, op, name);
    TFM_CHECK(t->defined(), op, ": ", name, " is required");
  }
  expect_shape(out, {d.B, d.Tq, d.D}, op, "out");
  expect_shape(dout, {d.B, d.Tq, d.D}, op, "dout");
  expect_shape(lse, {d.B, d.H, d.Tq}, op, "lse");
  expect_shape(dq, {d.B, d.Tq, d.wq}, op, "dq");
  expect_shape(dk, {d.B, d.Tk, d.wk}, op, "dk");
  expect_shape(dv, {d.B, d.Tk, d.wv}, op, "dv");
  expect_same_dtype(q, out, op, "out");
  expect_same_dtype(q, dout, op, "dout");
  expect_same_dtype(q, dq, op, "dq");
  expect_same_dtype(q, dk, op, "dk");
  expect_same_dtype(q, dv, op, "dv");
  expect_dtype(lse, accumulation_dtype(q.dtype), op, "lse");
  expect_disjoint(dq, args.q_col, dk, args.k_col, d.D, op, "dq and dk");
  expect_disjoint(dq, args.q_col, dv, args.v_col, d.D, op, "dq and dv");
  expect_disjoint(dk, args.k_col, dv, args.v_col, d.D, op, "dk and dv");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::attention_backward(ctx, args, q, k, v, key_lengths, out, lse, dout, dq, dk, dv);
#else
    no_cuda_twin(op);
#endif
  }
  check_key_lengths(key_lengths, d.Tk, op);
  dispatch_cpu_float(q.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    backward_cpu<T>(ctx, args, d, q, k, v, key_lengths.as<int32_t>(), lse, dout, dq, dk, dv);
  });
}

}  // namespace tfm
