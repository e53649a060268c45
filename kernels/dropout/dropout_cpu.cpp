// CPU twin of inverted dropout (kernels/dropout/dropout.h) and its dispatchers.
//   forward:  y[i]  = keep(i) ? x[i]  · 1/(1 − p) : 0
//   backward: dx[i] = keep(i) ? dy[i] · 1/(1 − p) : 0      (the same mask, regenerated)
//   keep(i) = dropout_keep(spec, i), i.e. philox_bits(seed, offset + i) ≥ dropout_threshold(p).
// Both directions are one masked scale, so they share one loop. The loop walks Philox counters
// (groups of four consecutive global elements, kernels/core/philox.h), drawing each counter once;
// the mask does not depend on how the groups are spread over threads. Output may alias input:
// element i is read before it is written and nothing else touches it.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/core/parallel.h"
#include "kernels/dropout/dropout.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/dropout/dropout_cuda.h"
#endif

namespace tfm {

namespace {

void check_dropout(const Context& ctx, const Tensor& in, const Tensor& out, const DropoutSpec& d,
                   const char* op, const char* in_arg, const char* out_arg) {
  TFM_CHECK(in.defined() && out.defined(), op, ": ", in_arg, " and ", out_arg,
            " must be defined");
  expect_device(ctx, in, op, in_arg);
  expect_device(ctx, out, op, out_arg);
  expect_same_dtype(in, out, op, out_arg);
  TFM_CHECK(in.numel() == out.numel(), op, ": ", out_arg, " has shape ", out.shape_str(),
            " but ", in_arg, " has shape ", in.shape_str(), " (element counts differ)");
  // Written so that NaN fails too; p = 1 would divide by zero.
  TFM_CHECK(d.p >= 0.0f && d.p < 1.0f, op, ": dropout rate p = ", d.p,
            " is outside [0, 1)");
}

template <class T>
void masked_scale_cpu(const T* in, T* out, int64_t n, const DropoutSpec& d) {
  if (n == 0) return;
  const T scale = T(1.0 / (1.0 - double(d.p)));
  const uint32_t threshold = dropout_threshold(d.p);
  // Global elements [offset, offset + n) fall in Philox counters first .. last (four per
  // counter); the first and last counters may be partly outside this call's range.
  const uint64_t first = d.offset / 4, last = (d.offset + uint64_t(n) - 1) / 4;
  const int64_t counters = int64_t(last - first + 1);
  // Blocks of counters, one block per task: the block's random words first (independent
  // counters, so the compiler runs several Philox streams side by side), then one plain pass
  // over the block's elements. The store-then-zero form keeps y = 0 exactly where dropped.
  constexpr int64_t kBlock = 256;
  parallel_for((counters + kBlock - 1) / kBlock, [&](int64_t blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(counters, c0 + kBlock);
    uint32_t bits[4 * kBlock];  // bits[4·(c − c0) + word] for counter first + c
    for (int64_t c = c0; c < c1; ++c) {
      const Philox4 r = philox4x32_10(d.seed, first + uint64_t(c));
      for (int word = 0; word < 4; ++word) bits[4 * (c - c0) + word] = r.x[word];
    }
    // This block's elements inside [offset, offset + n), as global indices [e0, e1).
    const uint64_t block_start = (first + uint64_t(c0)) * 4;
    const uint64_t e0 = std::max(block_start, d.offset);
    const uint64_t e1 = std::min((first + uint64_t(c1)) * 4, d.offset + uint64_t(n));
    const uint32_t* keep_bits = bits + (e0 - block_start);
    const T* x = in + (e0 - d.offset);
    T* y = out + (e0 - d.offset);
    const T s = scale;              // local copies: the stores to y cannot change them, so the
    const uint32_t t = threshold;   // compiler keeps them in registers and vectorises the loop
    for (int64_t j = 0; j < int64_t(e1 - e0); ++j) {
      y[j] = x[j] * s;
      if (keep_bits[j] < t) y[j] = T(0);
    }
  });
}

void dropout_apply(const Context& ctx, const Tensor& in, const Tensor& out, const DropoutSpec& d,
                   const char* op, const char* in_arg, const char* out_arg) {
  check_dropout(ctx, in, out, d, op, in_arg, out_arg);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::dropout_apply(ctx, in, out, d, op);
#else
    no_cuda_twin(op);
#endif
  }
  if (!d.active()) {
    // p == 0: the identity, without drawing any random numbers.
    if (in.data != out.data) std::memcpy(out.data, in.data, in.bytes());
    return;
  }
  dispatch_cpu_float(in.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    masked_scale_cpu<T>(in.as<T>(), out.as<T>(), in.numel(), d);
  });
}

}  // namespace

void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& y, const DropoutSpec& d) {
  dropout_apply(ctx, x, y, d, "dropout_forward", "x", "y");
}

void dropout_backward(const Context& ctx, const Tensor& dy, const Tensor& dx,
                      const DropoutSpec& d) {
  dropout_apply(ctx, dy, dx, d, "dropout_backward", "dy", "dx");
}

}  // namespace tfm
