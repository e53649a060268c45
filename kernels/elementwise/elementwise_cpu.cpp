// CPU twins of the element-wise ops, and the dispatchers (CUDA twins come with the GPU backend).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/core/parallel.h"
#include "kernels/elementwise/elementwise.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/elementwise/elementwise_cuda.h"
#endif

namespace tfm {

namespace {
void expect_same(const Context& ctx, const Tensor& a, const Tensor& b, const char* op) {
  expect_device(ctx, a, op, "first argument");
  expect_device(ctx, b, op, "second argument");
  expect_same_dtype(a, b, op, "second argument");
  TFM_CHECK(a.numel() == b.numel(), op, ": ", a.shape_str(), " vs ", b.shape_str());
}
}  // namespace

void add(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  expect_same(ctx, a, b, "add");
  expect_same(ctx, a, out, "add");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::add(ctx, a, b, out);
#else
    no_cuda_twin("add");
#endif
  }
  dispatch_cpu_float(a.dtype, "add", [&](auto zero) {
    using T = decltype(zero);
    const T *pa = a.as<T>(), *pb = b.as<T>();
    T* po = out.as<T>();
    parallel_for(a.numel(), [&](int64_t i) { po[i] = pa[i] + pb[i]; });
  });
}

void accumulate(const Context& ctx, const Tensor& dst, const Tensor& src) {
  add(ctx, dst, src, dst);
}

void copy(const Context& ctx, const Tensor& src, const Tensor& dst) {
  expect_same(ctx, src, dst, "copy");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::copy(ctx, src, dst);
#else
    no_cuda_twin("copy");
#endif
  }
  if (src.data != dst.data) std::memcpy(dst.data, src.data, src.bytes());
}

void fill_zero(const Context& ctx, const Tensor& x) {
  expect_device(ctx, x, "fill_zero", "x");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::fill_zero(ctx, x);
#else
    no_cuda_twin("fill_zero");
#endif
  }
  std::memset(x.data, 0, x.bytes());
}

void scale_inplace(const Context& ctx, const Tensor& x, double factor) {
  expect_device(ctx, x, "scale_inplace", "x");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::scale_inplace(ctx, x, factor);
#else
    no_cuda_twin("scale_inplace");
#endif
  }
  dispatch_cpu_float(x.dtype, "scale_inplace", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.as<T>();
    T f = T(factor);
    parallel_for(x.numel(), [&](int64_t i) { p[i] *= f; });
  });
}

double sum_squares(const Context& ctx, const Tensor& x) {
  expect_device(ctx, x, "sum_squares", "x");
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::sum_squares(ctx, x);
#else
    no_cuda_twin("sum_squares");
#endif
  }
  double total = 0;
  dispatch_cpu_float(x.dtype, "sum_squares", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.as<T>();
    // Fixed-size chunks summed in order: the result does not depend on the thread count.
    constexpr int64_t kChunk = 1 << 14;
    int64_t chunks = (x.numel() + kChunk - 1) / kChunk;
    std::vector<double> partial(size_t(chunks), 0.0);
    parallel_for(chunks, [&](int64_t c) {
      double s = 0;
      for (int64_t i = c * kChunk, e = std::min(x.numel(), i + kChunk); i < e; ++i)
        s += double(p[i]) * double(p[i]);
      partial[size_t(c)] = s;
    });
    for (double s : partial) total += s;
  });
  return total;
}

}  // namespace tfm
