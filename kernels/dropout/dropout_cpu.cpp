// CPU twin of inverted dropout (kernels/dropout/dropout.h) and its dispatchers.
//   forward:  y[i]  = keep(i) ? x[i]  · 1/(1 − p) : 0
//   backward: dx[i] = keep(i) ? dy[i] · 1/(1 − p) : 0      (the same mask, regenerated)
//   keep(i) = dropout_keep(spec, i), i.e. philox_bits(seed, dropout_element(spec, i)) ≥
//   dropout_threshold(p); dropout_element(spec, i) = offset + i unless the spec describes a
//   column block of a larger tensor (tensor parallelism), where it maps i to its logical index.
// Both directions are one masked scale, so they share one loop. The loop walks Philox counters
// (groups of four consecutive global elements, kernels/core/philox.h), drawing each counter once,
// over contiguous global ranges: the whole call when block == 0, else each local row of the
// block. The mask does not depend on how ranges are spread over threads. Output may alias input:
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
  // A column block must lie inside its logical rows, else two local rows would share elements.
  TFM_CHECK(d.block == 0 || d.block_start + d.block <= d.block_stride, op,
            ": dropout column block [", d.block_start, ", ", d.block_start + d.block,
            ") does not fit in rows of ", d.block_stride);
}

// Elements with global indices [e0, e1), stored contiguously at x and y: the random words of
// up to kChunk Philox counters first (independent counters, so the compiler runs several Philox
// streams side by side), then one plain pass over their elements; repeated until e1. The
// store-then-zero form keeps y = 0 exactly where dropped.
template <class T>
void masked_scale_span(const T* x, T* y, uint64_t e0, uint64_t e1, uint64_t seed, T s,
                       uint32_t t) {
  constexpr uint64_t kChunk = 256;
  uint32_t bits[4 * kChunk];  // bits[4·(c − c_first) + word] for counter c
  while (e0 < e1) {
    const uint64_t c_first = e0 / 4, c_end = std::min(c_first + kChunk, (e1 - 1) / 4 + 1);
    for (uint64_t c = c_first; c < c_end; ++c) {
      const Philox4 r = philox4x32_10(seed, c);
      for (int word = 0; word < 4; ++word) bits[4 * (c - c_first) + word] = r.x[word];
    }
    const uint64_t stop = std::min(e1, c_end * 4);
    const uint32_t* keep_bits = bits + (e0 - c_first * 4);
    const int64_t m = int64_t(stop - e0);
    // s and t are locals: the stores to y cannot change them, so the compiler keeps them in
    // registers and vectorises the loop.
    for (int64_t j = 0; j < m; ++j) {
      y[j] = x[j] * s;
      if (keep_bits[j] < t) y[j] = T(0);
    }
    x += m;
    y += m;
    e0 = stop;
  }
}

template <class T>
void masked_scale_cpu(const T* in, T* out, int64_t n, const DropoutSpec& d) {
  if (n == 0) return;
  const T scale = T(1.0 / (1.0 - double(d.p)));
  const uint32_t threshold = dropout_threshold(d.p);
  if (d.block == 0) {
    // The whole tensor: global elements [offset, offset + n) fall in Philox counters first ..
    // last (four per counter; the first and last may be partly outside this call's range).
    // Blocks of kBlock counters, one block per task.
    const uint64_t first = d.offset / 4, last = (d.offset + uint64_t(n) - 1) / 4;
    const int64_t counters = int64_t(last - first + 1);
    constexpr int64_t kBlock = 256;
    parallel_for((counters + kBlock - 1) / kBlock, [&](int64_t blk) {
      const uint64_t c0 = first + uint64_t(blk * kBlock);
      const uint64_t c1 = first + uint64_t(std::min(counters, (blk + 1) * kBlock));
      const uint64_t e0 = std::max(c0 * 4, d.offset);
      const uint64_t e1 = std::min(c1 * 4, d.offset + uint64_t(n));
      masked_scale_span(in + (e0 - d.offset), out + (e0 - d.offset), e0, e1, d.seed, scale,
                        threshold);
    });
    return;
  }
  // A column block (tensor parallelism): local row r, elements [r·block, (r + 1)·block), is the
  // contiguous global range starting at dropout_element(d, r·block); one span per row, rows
  // spread over threads. The last row may be partial when n is not a multiple of block.
  const uint64_t block = d.block;
  const int64_t rows = int64_t((uint64_t(n) + block - 1) / block);
  parallel_for(rows, [&](int64_t r) {
    const uint64_t i0 = uint64_t(r) * block, i1 = std::min(uint64_t(n), i0 + block);
    const uint64_t e0 = dropout_element(d, i0);
    masked_scale_span(in + i0, out + i0, e0, e0 + (i1 - i0), d.seed, scale, threshold);
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
