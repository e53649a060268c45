// CUDA twin of inverted dropout (kernels/dropout/dropout_cuda.h has the contract).
// Whole tensor (spec.block == 0): global elements [offset, offset + n) fall in Philox counters
// first .. last (four per counter); thread g draws counter first + g once and handles the (up to)
// four elements of it that lie in this call's range — exactly the loop of the CPU twin, spread
// over threads.
// Column block (spec.block > 0, tensor parallelism): local row r holds the contiguous global range
// [e0, e0 + len), e0 = dropout_element(spec, r·block); work item (r, c) draws the c-th counter
// touching that range and handles its elements inside it — the CPU twin's per-row spans, spread
// over threads. A range of len elements touches at most len/4 + 2 counters.
#include "kernels/core/cuda_common.cuh"
#include "kernels/dropout/dropout_cuda.h"

namespace tfm::cuda {

namespace {

template <class T>
__global__ void dropout_kernel(const T* in, T* out, int64_t n, uint64_t seed, uint64_t offset,
                               uint64_t first, uint64_t counters, uint32_t threshold,
                               float scale) {
  for (uint64_t g = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < counters;
       g += uint64_t(gridDim.x) * blockDim.x) {
    uint64_t counter = first + g;
    Philox4 bits = philox4x32_10(seed, counter);
#pragma unroll
    for (int word = 0; word < 4; ++word) {
      uint64_t e = counter * 4 + uint64_t(word);
      if (e < offset || e >= offset + uint64_t(n)) continue;
      int64_t i = int64_t(e - offset);
      out[i] = bits.x[word] >= threshold ? from_float<T>(to_float(in[i]) * scale)
                                         : from_float<T>(0.0f);
    }
  }
}

template <class T>
__global__ void dropout_block_kernel(const T* in, T* out, int64_t n, DropoutSpec d,
                                     uint64_t items, uint64_t per_row, uint32_t threshold,
                                     float scale) {
  for (uint64_t g = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < items;
       g += uint64_t(gridDim.x) * blockDim.x) {
    const uint64_t r = g / per_row, c = g % per_row;
    const uint64_t i0 = r * d.block;
    const uint64_t len = uint64_t(n) - i0 < d.block ? uint64_t(n) - i0 : d.block;
    const uint64_t e0 = dropout_element(d, i0), e1 = e0 + len;
    const uint64_t counter = e0 / 4 + c;
    if (counter * 4 >= e1) continue;  // this row touches fewer counters
    Philox4 bits = philox4x32_10(d.seed, counter);
#pragma unroll
    for (int word = 0; word < 4; ++word) {
      uint64_t e = counter * 4 + uint64_t(word);
      if (e < e0 || e >= e1) continue;
      int64_t i = int64_t(i0 + (e - e0));
      out[i] = bits.x[word] >= threshold ? from_float<T>(to_float(in[i]) * scale)
                                         : from_float<T>(0.0f);
    }
  }
}

}  // namespace

void dropout_apply(const Context& ctx, const Tensor& in, const Tensor& out, const DropoutSpec& d,
                   const char* op) {
  TFM_CHECK(in.defined() && out.defined(), op, ": input and output must be defined");
  expect_device(ctx, in, op, "input");
  expect_device(ctx, out, op, "output");
  expect_same_dtype(in, out, op, "output");
  TFM_CHECK(in.numel() == out.numel(), op, ": output has shape ", out.shape_str(),
            " but input has shape ", in.shape_str());
  TFM_CHECK(d.p >= 0.0f && d.p < 1.0f, op, ": dropout rate p = ", d.p, " is outside [0, 1)");
  TFM_CHECK(d.block == 0 || d.block_start + d.block <= d.block_stride, op,
            ": dropout column block [", d.block_start, ", ", d.block_start + d.block,
            ") does not fit in rows of ", d.block_stride);
  int64_t n = in.numel();
  if (n == 0) return;
  cudaStream_t stream = stream_of(ctx);
  if (!d.active()) {
    // p == 0: the identity, without drawing any random numbers.
    if (in.data != out.data)
      check_cuda(cudaMemcpyAsync(out.data, in.data, in.bytes(), cudaMemcpyDeviceToDevice, stream),
                 op);
    return;
  }
  // The same scale as the CPU twin: 1/(1 − p) formed in double, rounded once to float.
  const float scale = float(1.0 / (1.0 - double(d.p)));
  const uint32_t threshold = dropout_threshold(d.p);
  constexpr int kThreads = 256;
  if (d.block > 0) {
    const uint64_t rows = (uint64_t(n) + d.block - 1) / d.block;
    const uint64_t per_row = d.block / 4 + 2;
    const uint64_t items = rows * per_row;
    unsigned grid = grid_for(int64_t(items), kThreads);
    dispatch_gpu_float(in.dtype, op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch_kernel(dropout_block_kernel<T>, grid, kThreads, 0, stream,
                    static_cast<const T*>(in.data), static_cast<T*>(out.data), n, d, items, per_row,
                    threshold, scale);
    });
    check_launch(op);
    return;
  }
  const uint64_t first = d.offset / 4, last = (d.offset + uint64_t(n) - 1) / 4;
  const uint64_t counters = last - first + 1;
  unsigned grid = grid_for(int64_t(counters), kThreads);
  dispatch_gpu_float(in.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_kernel(dropout_kernel<T>, grid, kThreads, 0, stream, static_cast<const T*>(in.data),
                  static_cast<T*>(out.data), n, d.seed, d.offset, first, counters, threshold,
                  scale);
  });
  check_launch(op);
}

void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& y, const DropoutSpec& d) {
  dropout_apply(ctx, x, y, d, "dropout_forward");
}

void dropout_backward(const Context& ctx, const Tensor& dy, const Tensor& dx,
                      const DropoutSpec& d) {
  dropout_apply(ctx, dy, dx, d, "dropout_backward");
}

}  // namespace tfm::cuda
