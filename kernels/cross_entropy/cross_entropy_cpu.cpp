// CPU twin of label-smoothed softmax cross-entropy (kernels/cross_entropy/cross_entropy.h) and
// the dispatchers. Per row n of logits x [N, V] with gold class y, in the accumulation type:
//   lse = max(x) + log Σ_v exp(x_v − max(x))        (max-subtracted: no overflow for large x)
//   nll = −lp[y] = lse − x_y
//   mean_v(−lp[v]) = lse − mean_v(x_v)
//   loss = (1 − ε)·nll + ε·(lse − mean_v(x_v))       DESIGN.md's one definition
// Backward: dx_v = grad_scale · (exp(x_v − lse) − ((1 − ε)·[v == y] + ε/V)); each element is read
// before it is written, so dlogits may alias logits. Vocabulary-parallel: column v of a block is
// class vocab_offset + v and V is vocab_total, so the block is the full gradient's columns.
// Partial stats per block: (log Σ exp x, x_y or 0, Σ x), each row as in forward; combine:
//   lse = logsumexp_p lse_p (max-subtracted),  nll = lse − Σ_p x_y,p,  Σx = Σ_p Σx_p,
// and the loss as above with V = vocab_total.
// Rows are independent and each is computed by one thread, so results do not depend on the
// thread count. lse is written for ignored rows too (it is well defined and cheap).
#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/core/parallel.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/cross_entropy/cross_entropy_cuda.h"

namespace tfm {

namespace {

DType accumulation_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// Runs body(n) for every row: inline when the call touches fewer than 2^15 logits, where forking
// a thread team costs more than it saves (small tests, decoding); each row is computed the same
// way either way.
template <class F>
void for_each_row(int64_t N, int64_t V, F&& body) {
  if (N * V < (int64_t(1) << 15)) {
    for (int64_t n = 0; n < N; ++n) body(n);
  } else {
    parallel_for(N, body);
  }
}

// Shapes, dtypes and devices shared by forward and backward; returns {N, V}.
std::pair<int64_t, int64_t> validate(const Context& ctx, const Tensor& logits,
                                     const Tensor& targets, double smoothing, const char* op) {
  expect_device(ctx, logits, op, "logits");
  expect_device(ctx, targets, op, "targets");
  TFM_CHECK(logits.defined() && targets.defined(), op, ": logits and targets are required");
  TFM_CHECK(logits.rank == 2, op, ": logits must be [N, V], got ", logits.shape_str());
  const int64_t N = logits.dim(0), V = logits.dim(1);
  TFM_CHECK(V >= 1, op, ": logits ", logits.shape_str(), " have no classes");
  expect_shape(targets, {N}, op, "targets");
  expect_dtype(targets, DType::i32, op, "targets");
  TFM_CHECK(smoothing >= 0.0 && smoothing <= 1.0, op, ": label smoothing ", smoothing,
            " is outside [0, 1]");
  return {N, V};
}

void expect_row_output(const Context& ctx, const Tensor& t, int64_t N, DType acc, const char* op,
                       const char* arg) {
  expect_device(ctx, t, op, arg);
  TFM_CHECK(t.defined(), op, ": ", arg, " is required");
  expect_shape(t, {N}, op, arg);
  expect_dtype(t, acc, op, arg);
}

// Targets are in host memory on the CPU path; checked before any parallel loop, since an
// exception must not leave an OpenMP region.
void check_targets(const Tensor& targets, int64_t V, int32_t ignore_index, const char* op) {
  // V < 0: no upper bound known (partial stats see one block only).
  if (V < 0) {
    const int32_t* y = targets.as<int32_t>();
    for (int64_t n = 0; n < targets.numel(); ++n)
      TFM_CHECK(y[n] == ignore_index || y[n] >= 0, op, ": target id ", y[n], " at position ", n,
                " is negative and is not ignore_index (", ignore_index, ")");
    return;
  }
  const int32_t* y = targets.as<int32_t>();
  for (int64_t n = 0; n < targets.numel(); ++n)
    TFM_CHECK(y[n] == ignore_index || (y[n] >= 0 && y[n] < V), op, ": target id ", y[n],
              " at position ", n, " is outside [0, ", V, ") and is not ignore_index (",
              ignore_index, ")");
}

template <class T>
acc_t<T> row_lse(const T* x, int64_t V) {
  using A = acc_t<T>;
  A mx = A(x[0]);
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, A(x[v]));
  A sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(A(x[v]) - mx);
  return mx + std::log(sum);
}

template <class T>
void forward_cpu(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                 double smoothing, const Tensor& loss, const Tensor& nll, const Tensor& lse) {
  using A = acc_t<T>;
  const int64_t N = logits.dim(0), V = logits.dim(1);
  const T* x_all = logits.as<T>();
  const int32_t* y = targets.as<int32_t>();
  A* loss_out = loss.as<A>();
  A* nll_out = nll.as<A>();
  A* lse_out = lse.as<A>();
  const A eps = A(smoothing);
  for_each_row(N, V, [&](int64_t n) {
    const T* x = x_all + n * V;
    const A l = row_lse(x, V);
    lse_out[n] = l;
    if (y[n] == ignore_index) {
      loss_out[n] = nll_out[n] = A(0);
      return;
    }
    A sum_x = 0;
    for (int64_t v = 0; v < V; ++v) sum_x += A(x[v]);
    const A row_nll = l - A(x[y[n]]);
    nll_out[n] = row_nll;
    loss_out[n] = (A(1) - eps) * row_nll + eps * (l - sum_x / A(V));
  });
}

template <class T>
void backward_cpu(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                  int32_t ignore_index, double smoothing, double grad_scale,
                  const Tensor& dlogits, int64_t vocab_offset, int64_t vocab_total) {
  using A = acc_t<T>;
  const int64_t N = logits.dim(0), V = logits.dim(1);
  const T* x_all = logits.as<T>();
  T* dx_all = dlogits.as<T>();
  const int32_t* y = targets.as<int32_t>();
  const A* lse_in = lse.as<A>();
  const A scale = A(grad_scale);
  const A uniform = A(smoothing / double(vocab_total));  // ε/V: the smoothed target of every class
  const A gold = A(1.0 - smoothing);            // (1 − ε): the extra target of class y
  for_each_row(N, V, [&](int64_t n) {
    const T* x = x_all + n * V;
    T* dx = dx_all + n * V;
    if (y[n] == ignore_index) {
      std::fill(dx, dx + V, T(0));
      return;
    }
    const A l = lse_in[n];
    const int64_t gold_col = int64_t(y[n]) - vocab_offset;  // outside [0, V): another block's
    for (int64_t v = 0; v < V; ++v) {
      A target = uniform + (v == gold_col ? gold : A(0));
      dx[v] = T(scale * (std::exp(A(x[v]) - l) - target));
    }
  });
}

template <class T>
void partial_stats_cpu(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                       int64_t vocab_offset, const Tensor& stats) {
  using A = acc_t<T>;
  const int64_t N = logits.dim(0), V = logits.dim(1);
  const T* x_all = logits.as<T>();
  const int32_t* y = targets.as<int32_t>();
  A* out = stats.as<A>();
  for_each_row(N, V, [&](int64_t n) {
    const T* x = x_all + n * V;
    A sum_x = 0;
    for (int64_t v = 0; v < V; ++v) sum_x += A(x[v]);
    const int64_t col = int64_t(y[n]) - vocab_offset;
    const bool here = y[n] != ignore_index && col >= 0 && col < V;
    out[3 * n + 0] = row_lse(x, V);
    out[3 * n + 1] = here ? A(x[col]) : A(0);
    out[3 * n + 2] = sum_x;
  });
}

template <class A>
void combine_stats_cpu(const Tensor& stats_all, const Tensor& targets, int32_t ignore_index,
                       int64_t vocab_total, double smoothing, const Tensor& loss,
                       const Tensor& nll, const Tensor& lse) {
  const int64_t P = stats_all.dim(0), N = stats_all.dim(1);
  const A* st = stats_all.as<A>();
  const int32_t* y = targets.as<int32_t>();
  A* loss_out = loss.as<A>();
  A* nll_out = nll.as<A>();
  A* lse_out = lse.as<A>();
  const A eps = A(smoothing);
  for_each_row(N, P, [&](int64_t n) {
    // Ranks in order 0..P−1, so every rank (and every thread count) gets the same bits.
    A mx = st[3 * n];
    for (int64_t p = 1; p < P; ++p) mx = std::max(mx, st[(p * N + n) * 3]);
    A sum = 0, gold = 0, sum_x = 0;
    for (int64_t p = 0; p < P; ++p) {
      const A* s = st + (p * N + n) * 3;
      sum += std::exp(s[0] - mx);
      gold += s[1];
      sum_x += s[2];
    }
    const A l = mx + std::log(sum);
    lse_out[n] = l;
    if (y[n] == ignore_index) {
      loss_out[n] = nll_out[n] = A(0);
      return;
    }
    const A row_nll = l - gold;
    nll_out[n] = row_nll;
    loss_out[n] = (A(1) - eps) * row_nll + eps * (l - sum_x / A(vocab_total));
  });
}

}  // namespace

void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                           int32_t ignore_index, double smoothing, const Tensor& loss,
                           const Tensor& nll, const Tensor& lse) {
  const char* op = "cross_entropy_forward";
  auto [N, V] = validate(ctx, logits, targets, smoothing, op);
  const DType acc = accumulation_dtype(logits.dtype);
  expect_row_output(ctx, loss, N, acc, op, "loss");
  expect_row_output(ctx, nll, N, acc, op, "nll");
  expect_row_output(ctx, lse, N, acc, op, "lse");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::cross_entropy_forward(ctx, logits, targets, ignore_index, smoothing, loss, nll,
                                       lse);
#else
    no_cuda_twin(op);
#endif
  }
  check_targets(targets, V, ignore_index, op);
  dispatch_cpu_float(logits.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    forward_cpu<T>(logits, targets, ignore_index, smoothing, loss, nll, lse);
  });
}

void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, int32_t ignore_index, double smoothing,
                            double grad_scale, const Tensor& dlogits, int64_t vocab_offset,
                            int64_t vocab_total) {
  const char* op = "cross_entropy_backward";
  auto [N, V] = validate(ctx, logits, targets, smoothing, op);
  expect_row_output(ctx, lse, N, accumulation_dtype(logits.dtype), op, "lse");
  expect_device(ctx, dlogits, op, "dlogits");
  TFM_CHECK(dlogits.defined(), op, ": dlogits is required");
  expect_shape(dlogits, {N, V}, op, "dlogits");
  expect_same_dtype(logits, dlogits, op, "dlogits");
  TFM_CHECK(std::isfinite(grad_scale), op, ": grad_scale ", grad_scale, " is not finite");
  if (vocab_total == 0) vocab_total = V;
  TFM_CHECK(vocab_offset >= 0 && vocab_offset + V <= vocab_total, op, ": logits hold classes [",
            vocab_offset, ", ", vocab_offset + V, ") which do not fit in vocab_total ",
            vocab_total);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::cross_entropy_backward(ctx, logits, targets, lse, ignore_index, smoothing,
                                        grad_scale, dlogits, vocab_offset, vocab_total);
#else
    no_cuda_twin(op);
#endif
  }
  check_targets(targets, vocab_total, ignore_index, op);
  dispatch_cpu_float(logits.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    backward_cpu<T>(logits, targets, lse, ignore_index, smoothing, grad_scale, dlogits,
                    vocab_offset, vocab_total);
  });
}

void cross_entropy_partial_stats(const Context& ctx, const Tensor& logits_local,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_offset,
                                 const Tensor& stats) {
  const char* op = "cross_entropy_partial_stats";
  auto [N, V] = validate(ctx, logits_local, targets, 0.0, op);
  TFM_CHECK(vocab_offset >= 0, op, ": vocab_offset ", vocab_offset, " is negative");
  expect_device(ctx, stats, op, "stats");
  TFM_CHECK(stats.defined(), op, ": stats is required");
  expect_shape(stats, {N, 3}, op, "stats");
  expect_dtype(stats, accumulation_dtype(logits_local.dtype), op, "stats");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::cross_entropy_partial_stats(ctx, logits_local, targets, ignore_index,
                                             vocab_offset, stats);
#else
    no_cuda_twin(op);
#endif
  }
  check_targets(targets, -1, ignore_index, op);
  dispatch_cpu_float(logits_local.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    partial_stats_cpu<T>(logits_local, targets, ignore_index, vocab_offset, stats);
  });
}

void cross_entropy_combine_stats(const Context& ctx, const Tensor& stats_all,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_total,
                                 double smoothing, const Tensor& loss, const Tensor& nll,
                                 const Tensor& lse) {
  const char* op = "cross_entropy_combine_stats";
  expect_device(ctx, stats_all, op, "stats_all");
  expect_device(ctx, targets, op, "targets");
  TFM_CHECK(stats_all.defined() && targets.defined(), op, ": stats_all and targets are required");
  TFM_CHECK(stats_all.rank == 3 && stats_all.dim(2) == 3 && stats_all.dim(0) >= 1, op,
            ": stats_all must be [P, N, 3] with P ≥ 1, got ", stats_all.shape_str());
  const int64_t N = stats_all.dim(1);
  const DType acc = stats_all.dtype;
  TFM_CHECK(acc == DType::f32 || acc == DType::f64, op, ": stats_all must be f32 or f64, got ",
            dtype_name(acc));
  expect_shape(targets, {N}, op, "targets");
  expect_dtype(targets, DType::i32, op, "targets");
  TFM_CHECK(vocab_total >= 1, op, ": vocab_total ", vocab_total, " must be positive");
  TFM_CHECK(smoothing >= 0.0 && smoothing <= 1.0, op, ": label smoothing ", smoothing,
            " is outside [0, 1]");
  expect_row_output(ctx, loss, N, acc, op, "loss");
  expect_row_output(ctx, nll, N, acc, op, "nll");
  expect_row_output(ctx, lse, N, acc, op, "lse");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::cross_entropy_combine_stats(ctx, stats_all, targets, ignore_index, vocab_total,
                                             smoothing, loss, nll, lse);
#else
    no_cuda_twin(op);
#endif
  }
  check_targets(targets, vocab_total, ignore_index, op);
  if (acc == DType::f64) {
    combine_stats_cpu<double>(stats_all, targets, ignore_index, vocab_total, smoothing, loss, nll,
                              lse);
  } else {
    combine_stats_cpu<float>(stats_all, targets, ignore_index, vocab_total, smoothing, loss, nll,
                             lse);
  }
}

}  // namespace tfm
