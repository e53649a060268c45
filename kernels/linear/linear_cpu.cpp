// CPU twin of the linear layer (kernels/linear/linear.h) and its dispatcher.
//   forward:  y [M, N] = act(x [M, K] · wᵀ + b)          one GEMM, then a row-wise epilogue
//   backward: dy ← dy · (y > 0) (relu only, in place)
//             dx  = dy · w      (or += with accumulate_dx)  GEMM [M, N]·[N, K]
//             dw += dyᵀ · x                                 GEMM [N, M]·[M, K], beta = 1
//             db += Σ_rows dy                               column sums, rows in order
// x (and dx) may have any rank ≥ 1: the leading dimensions are flattened into M rows, and y (dy)
// must have the same leading dimensions with N as the last. The GEMMs go through OpenBLAS
// (cpu::gemm); everything else is plain loops over rows or column blocks, so no result
// depends on the OpenMP thread count.
#include <algorithm>
#include <cstring>

#include "kernels/core/parallel.h"
#include "kernels/gemm/gemm.h"
#include "kernels/linear/linear.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/linear/linear_cuda.h"
#endif

namespace tfm {

namespace {

// Sizes of one call: x viewed as [m, k], w [n, k].
struct LinearDims {
  int64_t m = 0, k = 0, n = 0;
};

// y / dy: same leading dimensions as x, last dimension n.
void expect_rows_like(const Tensor& x, const Tensor& t, int64_t last, const char* op,
                      const char* arg) {
  bool ok = t.rank == x.rank && t.shape[t.rank - 1] == last;
  for (int i = 0; ok && i + 1 < x.rank; ++i) ok = t.shape[i] == x.shape[i];
  Tensor want = x;
  want.shape[x.rank - 1] = last;
  TFM_CHECK(ok, op, ": ", arg, " has shape ", t.shape_str(), ", expected ", want.shape_str(),
            " (x is ", x.shape_str(), ")");
}

// Checks what forward and backward share: x [.., K], w [N, K], same dtype, on ctx's device.
LinearDims check_x_w(const Context& ctx, const Tensor& x, const Tensor& w, const char* op) {
  TFM_CHECK(x.defined() && w.defined(), op, ": x and w must be defined");
  TFM_CHECK(x.rank >= 1, op, ": x must have rank >= 1, got ", x.shape_str());
  TFM_CHECK(w.rank == 2, op, ": w must be [N, K], got ", w.shape_str());
  expect_device(ctx, x, op, "x");
  expect_device(ctx, w, op, "w");
  expect_same_dtype(x, w, op, "w");
  LinearDims d;
  d.k = x.dim(-1);
  d.m = 1;  // product of the leading dimensions (not numel / k, which fails for k = 0)
  for (int i = 0; i + 1 < x.rank; ++i) d.m *= x.shape[i];
  d.n = w.dim(0);
  TFM_CHECK(w.dim(1) == d.k, op, ": w is ", w.shape_str(), " but x has ", d.k,
            " features (last dimension of ", x.shape_str(), ")");
  return d;
}

// Optional parameter-side tensor (b, dw, db) of a given shape: undefined is fine, otherwise
// shape and device match and the dtype is x's (or f32 beside bf16/f16 x on the GPU).
void expect_optional(const Context& ctx, const Tensor& t, const Tensor& like,
                     std::initializer_list<int64_t> dims, const char* op, const char* arg) {
  if (!t.defined()) return;
  expect_device(ctx, t, op, arg);
  expect_param_dtype(ctx.device, like.dtype, t, op, arg);
  expect_shape(t, dims, op, arg);
}

template <class T>
void linear_forward_cpu(const LinearDims& d, const T* x, const T* w, const T* b,
                        Activation act, T* y) {
  if (d.k == 0) {
    // BLAS with k = 0 scales C by beta = 0, which keeps NaNs; an empty sum is exactly zero.
    std::fill_n(y, d.m * d.n, T(0));
  } else {
    cpu::gemm(GemmShape{false, true, d.m, d.n, d.k}, T(1), x, w, T(0), y);
  }
  if (!b && act == Activation::none) return;
  parallel_for(d.m, [&](int64_t r) {
    T* row = y + r * d.n;
    if (b)
      for (int64_t j = 0; j < d.n; ++j) row[j] += b[j];
    // Written as "< 0 → 0" so a NaN passes through (the loss-scaling overflow check needs it).
    if (act == Activation::relu)
      for (int64_t j = 0; j < d.n; ++j) row[j] = row[j] < T(0) ? T(0) : row[j];
  });
}

// db[j] += Σ_r dy[r, j]. Threads own blocks of columns and walk the rows in order, so each sum
// is formed in the same order whatever the thread count, and reads stay row-contiguous.
template <class T>
void add_column_sums(const LinearDims& d, const T* dy, T* db) {
  constexpr int64_t kBlock = 64;
  int64_t blocks = (d.n + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](int64_t blk) {
    int64_t j0 = blk * kBlock, j1 = std::min(d.n, j0 + kBlock);
    acc_t<T> sum[kBlock] = {};
    for (int64_t r = 0; r < d.m; ++r) {
      const T* row = dy + r * d.n;
      for (int64_t j = j0; j < j1; ++j) sum[j - j0] += row[j];
    }
    for (int64_t j = j0; j < j1; ++j) db[j] += T(sum[j - j0]);
  });
}

template <class T>
void linear_backward_cpu(const LinearDims& d, const T* x, const T* w, const T* y,
                         Activation act, T* dy, T* dx, T* dw, T* db, bool accumulate_dx) {
  if (act == Activation::relu) {
    // d relu(z)/dz = [z > 0] = [y > 0]; masking dy once serves dx, dw and db alike.
    parallel_for(d.m, [&](int64_t r) {
      const T* yr = y + r * d.n;
      T* dyr = dy + r * d.n;
      for (int64_t j = 0; j < d.n; ++j)
        if (!(yr[j] > T(0))) dyr[j] = T(0);
    });
  }
  if (dx) {
    if (d.n == 0) {
      if (!accumulate_dx) std::fill_n(dx, d.m * d.k, T(0));
    } else {
      cpu::gemm(GemmShape{false, false, d.m, d.k, d.n}, T(1), dy, w,
                     accumulate_dx ? T(1) : T(0), dx);
    }
  }
  if (dw && d.m > 0) cpu::gemm(GemmShape{true, false, d.n, d.k, d.m}, T(1), dy, x, T(1), dw);
  if (db) add_column_sums(d, dy, db);
}

}  // namespace

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    Activation act, const Tensor& y) {
  const char* op = "linear_forward";
  LinearDims d = check_x_w(ctx, x, w, op);
  expect_optional(ctx, b, x, {d.n}, op, "b");
  TFM_CHECK(y.defined(), op, ": y must be defined");
  expect_device(ctx, y, op, "y");
  expect_same_dtype(x, y, op, "y");
  expect_rows_like(x, y, d.n, op, "y");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::linear_forward(ctx, x, w, b, act, y);
#else
    no_cuda_twin(op);
#endif
  }
  dispatch_cpu_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    linear_forward_cpu<T>(d, x.as<T>(), w.as<T>(), b.defined() ? b.as<T>() : nullptr, act,
                           y.as<T>());
  });
}

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     Activation act, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                     const Tensor& db, bool accumulate_dx) {
  const char* op = "linear_backward";
  LinearDims d = check_x_w(ctx, x, w, op);
  TFM_CHECK(dy.defined(), op, ": dy must be defined");
  expect_device(ctx, dy, op, "dy");
  expect_same_dtype(x, dy, op, "dy");
  expect_rows_like(x, dy, d.n, op, "dy");
  if (act == Activation::relu) {
    // The ReLU mask is read from the saved output.
    TFM_CHECK(y.defined(), op, ": Activation::relu needs the forward output y");
    expect_device(ctx, y, op, "y");
    expect_same_dtype(x, y, op, "y");
    expect_rows_like(x, y, d.n, op, "y");
  }
  if (dx.defined()) {
    expect_device(ctx, dx, op, "dx");
    expect_same_dtype(x, dx, op, "dx");
    expect_rows_like(x, dx, d.k, op, "dx");
  }
  expect_optional(ctx, dw, x, {d.n, d.k}, op, "dw");
  expect_optional(ctx, db, x, {d.n}, op, "db");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::linear_backward(ctx, x, w, y, act, dy, dx, dw, db, accumulate_dx);
#else
    no_cuda_twin(op);
#endif
  }
  dispatch_cpu_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    auto ptr = [](const Tensor& t) { return t.defined() ? t.as<T>() : nullptr; };
    linear_backward_cpu<T>(d, x.as<T>(), w.as<T>(), ptr(y), act, dy.as<T>(), ptr(dx), ptr(dw),
                            ptr(db), accumulate_dx);
  });
}

}  // namespace tfm
