// CUDA twin of the linear layer (kernels/linear/linear_cuda.h has the contract).
// Row-major GEMMs, in the terms of kernels/gemm/gemm.h:
//   y  [M, N] = x [M, K] · wᵀ           GemmShape{trans_a = 0, trans_b = 1, M, N, K}
//   dx [M, K] = dy [M, N] · w [N, K]     GemmShape{0, 0, M, K, N}
//   dw [N, K] = dyᵀ · x [M, K]           GemmShape{1, 0, N, K, M}, beta = 1;
//                                        its bgrad_a epilogue gives Σ_k op(A)[i, k] = Σ_rows dy
#include <atomic>

#include "kernels/core/cuda_common.cuh"
#include "kernels/elementwise/elementwise_cuda.h"
#include "kernels/gemm/gemm_cuda.h"
#include "kernels/linear/linear_cuda.h"

namespace tfm::cuda {

namespace {

std::atomic<BiasGradPath> g_bias_grad_path{BiasGradPath::epilogue_if_available};

struct Dims {
  int64_t m = 0, k = 0, n = 0;
};

// x [.., K], w [N, K]; the activation dtype is x's. Shapes of the other tensors are checked by
// element count (the public dispatcher has checked their exact shapes already).
Dims check_x_w(const Context& ctx, const Tensor& x, const Tensor& w, const char* op) {
  TFM_CHECK(x.defined() && w.defined(), op, ": x and w must be defined");
  TFM_CHECK(x.rank >= 1 && w.rank == 2, op, ": x ", x.shape_str(), " / w ", w.shape_str());
  expect_device(ctx, x, op, "x");
  expect_device(ctx, w, op, "w");
  expect_same_dtype(x, w, op, "w");
  TFM_CHECK(is_gpu_float(x.dtype), op, ": the CUDA twin runs f32, bf16 or f16, got ",
            dtype_name(x.dtype));
  Dims d;
  d.k = x.dim(-1);
  d.m = 1;
  for (int i = 0; i + 1 < x.rank; ++i) d.m *= x.shape[i];
  d.n = w.dim(0);
  TFM_CHECK(w.dim(1) == d.k, op, ": w is ", w.shape_str(), " but x has ", d.k, " features");
  return d;
}

void check_tensor(const Context& ctx, const Tensor& t, int64_t numel, const Tensor& x,
                  bool f32_allowed, const char* op, const char* arg) {
  TFM_CHECK(t.defined(), op, ": ", arg, " must be defined");
  expect_device(ctx, t, op, arg);
  TFM_CHECK(t.dtype == x.dtype || (f32_allowed && t.dtype == DType::f32), op, ": ", arg, " is ",
            dtype_name(t.dtype), ", expected ", dtype_name(x.dtype),
            f32_allowed ? " or f32" : "");
  TFM_CHECK(t.numel() == numel, op, ": ", arg, " has shape ", t.shape_str(), ", expected ",
            numel, " elements");
}

// dy[i] = y[i] > 0 ? dy[i] : 0 — "!(y > 0)" zeroes NaN positions too, as the CPU twin does.
template <class T>
__global__ void relu_mask_kernel(T* dy, const T* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    if (!(to_float(y[i]) > 0.0f)) dy[i] = from_float<T>(0.0f);
}

// The same on 16-byte packs (both pointers 16-byte aligned); elements past the last whole pack
// are left to the scalar kernel.
template <class T>
__global__ void relu_mask_pack_kernel(T* dy, const T* y, int64_t packs) {
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < packs;
       p += int64_t(gridDim.x) * blockDim.x) {
    Pack<T> yv = load_pack(y + p * kPack<T>);
    Pack<T> dv = load_pack(dy + p * kPack<T>);
#pragma unroll
    for (int e = 0; e < kPack<T>; ++e)
      if (!(to_float(yv.v[e]) > 0.0f)) dv.v[e] = from_float<T>(0.0f);
    store_pack(dy + p * kPack<T>, dv);
  }
}

void relu_mask(const Context& ctx, const Tensor& dy, const Tensor& y) {
  int64_t n = dy.numel();
  if (n == 0) return;
  constexpr int kThreads = 256;
  dispatch_gpu_float(dy.dtype, "linear_backward (relu mask)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* pd = static_cast<T*>(dy.data);
    const T* py = static_cast<const T*>(y.data);
    int64_t done = 0;
    if (aligned16(pd) && aligned16(py)) {
      int64_t packs = n / kPack<T>;
      if (packs) {
        launch_kernel(relu_mask_pack_kernel<T>, grid_for(packs, kThreads), kThreads, 0,
                      stream_of(ctx), pd, py, packs);
        check_launch("linear_backward (relu mask)");
      }
      done = packs * kPack<T>;
    }
    if (done < n) {
      launch_kernel(relu_mask_kernel<T>, grid_for(n - done, kThreads), kThreads, 0, stream_of(ctx),
                    pd + done, py + done, n - done);
      check_launch("linear_backward (relu mask)");
    }
  });
}

}  // namespace

void set_linear_bias_grad_path(BiasGradPath path) { g_bias_grad_path.store(path); }
BiasGradPath linear_bias_grad_path() { return g_bias_grad_path.load(); }

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    Activation act, const Tensor& y) {
  const char* op = "linear_forward";
  Dims d = check_x_w(ctx, x, w, op);
  check_tensor(ctx, y, d.m * d.n, x, false, op, "y");
  if (b.defined()) check_tensor(ctx, b, d.n, x, true, op, "b");
  GemmEpilogue ep;
  bool relu = act == Activation::relu;
  if (b.defined()) {
    ep.kind = relu ? Epilogue::relu_bias : Epilogue::bias;
    ep.bias = b.data;
    ep.bias_dtype = b.dtype;
  } else if (relu) {
    ep.kind = Epilogue::relu;
  }
  gemm_ex(ctx, GemmShape{false, true, d.m, d.n, d.k}, x.dtype, y.dtype, 1.0, x.data, w.data, 0.0,
          y.data, ep);
}

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     Activation act, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                     const Tensor& db, bool accumulate_dx) {
  const char* op = "linear_backward";
  Dims d = check_x_w(ctx, x, w, op);
  check_tensor(ctx, dy, d.m * d.n, x, false, op, "dy");
  if (act == Activation::relu) check_tensor(ctx, y, d.m * d.n, x, false, op, "y");
  if (dx.defined()) check_tensor(ctx, dx, d.m * d.k, x, false, op, "dx");
  if (dw.defined()) check_tensor(ctx, dw, d.n * d.k, x, true, op, "dw");
  if (db.defined()) check_tensor(ctx, db, d.n, x, true, op, "db");

  // d relu(z)/dz = [z > 0] = [y > 0]; masking dy once serves dx, dw and db alike.
  if (act == Activation::relu) relu_mask(ctx, dy, y);

  if (dx.defined())
    gemm_ex(ctx, GemmShape{false, false, d.m, d.k, d.n}, x.dtype, dx.dtype, 1.0, dy.data, w.data,
            accumulate_dx ? 1.0 : 0.0, dx.data);

  bool db_done = false;
  if (dw.defined() && d.m > 0) {
    GemmShape s{true, false, d.n, d.k, d.m};
    GemmEpilogue ep;
    Tensor bgrad;  // the epilogue writes (=) Σ_rows dy here, in dw's dtype; then db += it
    if (db.defined() && db.dtype == dw.dtype && d.k > 0 &&
        linear_bias_grad_path() == BiasGradPath::epilogue_if_available) {
      ep.kind = Epilogue::bgrad_a;
      bgrad = Tensor(nullptr, dw.dtype, Device::cuda, {d.n});
      bgrad.data = scratch(ctx, bgrad.bytes(), op);
      ep.bias_grad = bgrad.data;
      if (!gemm_epilogue_fusable(ctx, s, x.dtype, dw.dtype, dy.data, x.data, dw.data, ep))
        ep = GemmEpilogue{};  // no fused algorithm: the column-sum kernel below is cheaper
    }
    gemm_ex(ctx, s, x.dtype, dw.dtype, 1.0, dy.data, x.data, 1.0, dw.data, ep);
    if (ep.kind == Epilogue::bgrad_a) {
      cuda::accumulate(ctx, db, bgrad);  // qualified: ADL would also find tfm::accumulate
      db_done = true;
    }
  }
  if (db.defined() && !db_done)
    column_sums(ctx, dy.dtype, dy.data, d.m, d.n, d.n, db.dtype, db.data, /*accumulate=*/true);
}

}  // namespace tfm::cuda
