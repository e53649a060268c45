// CUDA twin of inverted dropout (kernels/dropout/dropout_cuda.h has the contract).
// Global elements [offset, offset + n) fall in Philox counters first .. last (four per counter);
// thread g draws counter first + g once and handles the (up to) four elements of it that lie in
// this call's range — exactly the loop of the CPU twin, spread over threads.
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
  const uint64_t first = d.offset / 4, last = (d.offset + uint64_t(n) - 1) / 4;
  const uint64_t counters = last - first + 1;
  constexpr int kThreads = 256;
  unsigned grid = grid_for(int64_t(counters), kThreads);
  dispatch_gpu_float(in.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(in.data),
                                                     static_cast<T*>(out.data), n, d.seed,
                                                     d.offset, first, counters, threshold, scale);
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
