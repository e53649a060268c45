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

namespace {
// Host element access through double (exact for every dtype here), rounding once on store.
double load_as_double(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::f32: return t.as<float>()[i];
    case DType::f64: return t.as<double>()[i];
    case DType::bf16: return bf16_to_float(t.as<bf16_t>()[i]);
    case DType::f16: return f16_to_float(t.as<f16_t>()[i]);
    default: fail(cat("convert: ", dtype_name(t.dtype), " is not a floating dtype"));
  }
}
void store_from_double(const Tensor& t, int64_t i, double v) {
  switch (t.dtype) {
    case DType::f32: t.as<float>()[i] = float(v); return;
    case DType::f64: t.as<double>()[i] = v; return;
    // Through float first: every f32, bf16 and f16 value is a float, and the device converts
    // from float too, so both twins round the same way.
    case DType::bf16: t.as<bf16_t>()[i] = float_to_bf16(float(v)); return;
    case DType::f16: t.as<f16_t>()[i] = float_to_f16(float(v)); return;
    default: fail(cat("convert: ", dtype_name(t.dtype), " is not a floating dtype"));
  }
}
}  // namespace

void convert(const Context& ctx, const Tensor& src, const Tensor& dst) {
  const char* op = "convert";
  TFM_CHECK(src.defined() && dst.defined(), op, ": tensors must be defined");
  expect_device(ctx, src, op, "src");
  expect_device(ctx, dst, op, "dst");
  TFM_CHECK(src.numel() == dst.numel(), op, ": ", src.shape_str(), " vs ", dst.shape_str());
  if (src.dtype == dst.dtype) return copy(ctx, src, dst);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::convert(ctx, src, dst);
#else
    no_cuda_twin(op);
#endif
  }
  auto floating = [](DType t) {
    return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
  };
  TFM_CHECK(floating(src.dtype) && floating(dst.dtype), op, ": converts floating dtypes, got ",
            dtype_name(src.dtype), " to ", dtype_name(dst.dtype));
  parallel_for(src.numel(), [&](int64_t i) { store_from_double(dst, i, load_as_double(src, i)); });
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
