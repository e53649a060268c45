// CPU twin of layer normalisation over the last dimension (kernels/layernorm/layernorm.h) and its
// dispatchers. With A = acc_t<T> (float for f32, double for f64):
//   forward, per row r of x [M, D]:
//     mean_r = Σ_j x_rj / D,  var_r = Σ_j (x_rj − mean_r)² / D   (two passes, in A)
//     rstd_r = 1 / sqrt(var_r + eps),  y_rj = (x_rj − mean_r) · rstd_r · gamma_j + beta_j
//   backward, with x̂ = (x − mean) · rstd and g = dy · gamma:
//     dx_rj     = rstd_r · (g_rj − mean_j(g_r·) − x̂_rj · mean_j(g_r· x̂_r·))
//     dgamma_j += Σ_r dy_rj · x̂_rj,   dbeta_j += Σ_r dy_rj
// x, y, dx, dy may have any rank ≥ 1 (rows × last dimension); mean and rstd hold one value per
// row. dgamma and dbeta are reduced by threads that own blocks of columns and walk the rows in
// order, so they do not depend on the thread count; they are formed before dx is written
// because dx may alias dy.
#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/core/parallel.h"
#include "kernels/layernorm/layernorm.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/layernorm/layernorm_cuda.h"
#endif

namespace tfm {

namespace {

struct NormDims {
  int64_t rows = 0, width = 0;
};

NormDims check_rows(const Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                    const Tensor& rstd, const char* op) {
  TFM_CHECK(x.defined() && gamma.defined() && mean.defined() && rstd.defined(), op,
            ": x, gamma, mean and rstd must be defined");
  TFM_CHECK(x.rank >= 1, op, ": x must have rank >= 1, got ", x.shape_str());
  expect_device(ctx, x, op, "x");
  expect_device(ctx, gamma, op, "gamma");
  expect_device(ctx, mean, op, "mean");
  expect_device(ctx, rstd, op, "rstd");
  NormDims d;
  d.width = x.dim(-1);
  d.rows = d.width ? x.numel() / d.width : 0;
  TFM_CHECK(d.width > 0, op, ": x has no features, shape ", x.shape_str());
  expect_param_dtype(ctx.device, x.dtype, gamma, op, "gamma");
  expect_shape(gamma, {d.width}, op, "gamma");
  // Statistics are kept in the accumulation type of x's dtype.
  DType stat = x.dtype == DType::f64 ? DType::f64 : DType::f32;
  expect_dtype(mean, stat, op, "mean");
  expect_dtype(rstd, stat, op, "rstd");
  TFM_CHECK(mean.numel() == d.rows, op, ": mean has shape ", mean.shape_str(), ", expected ",
            d.rows, " values (one per row of x ", x.shape_str(), ")");
  TFM_CHECK(rstd.numel() == d.rows, op, ": rstd has shape ", rstd.shape_str(), ", expected ",
            d.rows, " values (one per row of x ", x.shape_str(), ")");
  return d;
}

void expect_same_shape(const Context& ctx, const Tensor& like, const Tensor& t, const char* op,
                       const char* arg) {
  TFM_CHECK(t.defined(), op, ": ", arg, " must be defined");
  expect_device(ctx, t, op, arg);
  expect_same_dtype(like, t, op, arg);
  bool ok = t.rank == like.rank;
  for (int i = 0; ok && i < t.rank; ++i) ok = t.shape[i] == like.shape[i];
  TFM_CHECK(ok, op, ": ", arg, " has shape ", t.shape_str(), ", expected ", like.shape_str());
}

template <class T>
void layer_norm_forward_cpu(const NormDims& d, const T* x, const T* gamma, const T* beta,
                            double eps, T* y, acc_t<T>* mean, acc_t<T>* rstd) {
  using A = acc_t<T>;
  parallel_for(d.rows, [&](int64_t r) {
    const T* xr = x + r * d.width;
    T* yr = y + r * d.width;
    A sum = 0;
    for (int64_t j = 0; j < d.width; ++j) sum += A(xr[j]);
    A mu = sum / A(d.width);
    // Second pass on centred values: no cancellation when |mean| ≫ std.
    A sq = 0;
    for (int64_t j = 0; j < d.width; ++j) {
      A c = A(xr[j]) - mu;
      sq += c * c;
    }
    A rs = A(1) / std::sqrt(sq / A(d.width) + A(eps));
    for (int64_t j = 0; j < d.width; ++j)
      yr[j] = T((A(xr[j]) - mu) * rs * A(gamma[j]) + A(beta[j]));
    mean[r] = mu;
    rstd[r] = rs;
  });
}

template <class T>
void layer_norm_backward_cpu(const NormDims& d, const T* dy, const T* x, const T* gamma,
                             const acc_t<T>* mean, const acc_t<T>* rstd, T* dx, T* dgamma,
                             T* dbeta) {
  using A = acc_t<T>;
  if (dgamma || dbeta) {
    constexpr int64_t kBlock = 64;
    int64_t blocks = (d.width + kBlock - 1) / kBlock;
    parallel_for(blocks, [&](int64_t blk) {
      int64_t j0 = blk * kBlock, j1 = std::min(d.width, j0 + kBlock);
      A sum_gamma[kBlock] = {}, sum_beta[kBlock] = {};
      for (int64_t r = 0; r < d.rows; ++r) {
        const T* xr = x + r * d.width;
        const T* dyr = dy + r * d.width;
        for (int64_t j = j0; j < j1; ++j) {
          A xhat = (A(xr[j]) - mean[r]) * rstd[r];
          sum_gamma[j - j0] += A(dyr[j]) * xhat;
          sum_beta[j - j0] += A(dyr[j]);
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        if (dgamma) dgamma[j] += T(sum_gamma[j - j0]);
        if (dbeta) dbeta[j] += T(sum_beta[j - j0]);
      }
    });
  }
  parallel_for(d.rows, [&](int64_t r) {
    const T* xr = x + r * d.width;
    const T* dyr = dy + r * d.width;
    T* dxr = dx + r * d.width;
    A mu = mean[r], rs = rstd[r];
    A sum_g = 0, sum_g_xhat = 0;
    for (int64_t j = 0; j < d.width; ++j) {
      A g = A(dyr[j]) * A(gamma[j]);
      sum_g += g;
      sum_g_xhat += g * (A(xr[j]) - mu) * rs;
    }
    A mean_g = sum_g / A(d.width), mean_g_xhat = sum_g_xhat / A(d.width);
    // Element j reads dy[j] before writing dx[j], so dx may alias dy.
    for (int64_t j = 0; j < d.width; ++j) {
      A g = A(dyr[j]) * A(gamma[j]);
      A xhat = (A(xr[j]) - mu) * rs;
      dxr[j] = T(rs * (g - mean_g - xhat * mean_g_xhat));
    }
  });
}

}  // namespace

void layer_norm_forward(const Context& ctx, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, double eps, const Tensor& y, const Tensor& mean,
                        const Tensor& rstd) {
  const char* op = "layer_norm_forward";
  NormDims d = check_rows(ctx, x, gamma, mean, rstd, op);
  TFM_CHECK(beta.defined(), op, ": beta must be defined");
  expect_device(ctx, beta, op, "beta");
  expect_param_dtype(ctx.device, x.dtype, beta, op, "beta");
  expect_shape(beta, {d.width}, op, "beta");
  expect_same_shape(ctx, x, y, op, "y");
  TFM_CHECK(eps >= 0, op, ": eps ", eps, " is negative");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::layer_norm_forward(ctx, x, gamma, beta, eps, y, mean, rstd);
#else
    no_cuda_twin(op);
#endif
  }
  dispatch_cpu_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    using A = acc_t<T>;
    layer_norm_forward_cpu<T>(d, x.as<T>(), gamma.as<T>(), beta.as<T>(), eps, y.as<T>(),
                              mean.as<A>(), rstd.as<A>());
  });
}

void layer_norm_backward(const Context& ctx, const Tensor& dy, const Tensor& x,
                         const Tensor& gamma, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
  const char* op = "layer_norm_backward";
  NormDims d = check_rows(ctx, x, gamma, mean, rstd, op);
  expect_same_shape(ctx, x, dy, op, "dy");
  expect_same_shape(ctx, x, dx, op, "dx");
  for (auto [t, arg] : {std::pair{&dgamma, "dgamma"}, std::pair{&dbeta, "dbeta"}}) {
    if (!t->defined()) continue;  // a frozen parameter: its gradient is not wanted
    expect_device(ctx, *t, op, arg);
    expect_param_dtype(ctx.device, x.dtype, *t, op, arg);
    expect_shape(*t, {d.width}, op, arg);
  }
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
#else
    no_cuda_twin(op);
#endif
  }
  dispatch_cpu_float(x.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    using A = acc_t<T>;
    auto ptr = [](const Tensor& t) { return t.defined() ? t.as<T>() : nullptr; };
    layer_norm_backward_cpu<T>(d, dy.as<T>(), x.as<T>(), gamma.as<T>(), mean.as<A>(),
                               rstd.as<A>(), dx.as<T>(), ptr(dgamma), ptr(dbeta));
  });
}

}  // namespace tfm
