// CUDA twin of label-smoothed softmax cross-entropy; contract in cross_entropy.h, notes in
// cross_entropy_cuda.h. Per row n of logits x [N, V] with gold class y, in fp32:
//   running per thread:  m = max x_v,  s = Σ exp(x_v − m),  Σ x_v      (one read of the row)
//   merged over the block: (m1, s1) ⊕ (m2, s2) = (m, s1·e^(m1−m) + s2·e^(m2−m)), m = max(m1, m2)
//   lse = m + log s;  nll = lse − x_y;  loss = (1 − ε)·nll + ε·(lse − Σx / V)
// Backward: dx_v = grad_scale · (exp(x_v − lse) − ((1 − ε)·[v == y] + ε/V)), each element read
// before the same thread writes it, so dlogits may alias logits. Vocabulary-parallel: column v is
// class vocab_offset + v and V is vocab_total (backward); partial stats reuse forward's row pass,
// and the combine merges the ranks' (lse_p, x_y, Σx) per row as the CPU twin does.
#include <cmath>
#include <cstdint>

#include "kernels/core/cuda_common.cuh"
#include "kernels/cross_entropy/cross_entropy_cuda.h"

namespace tfm::cuda {

namespace {

constexpr int kThreads = 256;

// Raised (set to 1) by any kernel that meets an invalid target id; per device.
__device__ int g_invalid_target = 0;

// (m, s) ⊕ (m2, s2). A side whose max is −∞ has s = 0 and contributes nothing; testing the
// merged max avoids −∞ − (−∞) = NaN.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  s = mn == -INFINITY ? 0.f : s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

// Folds a group of values with maximum `gmax` into the running (m, s).
__device__ __forceinline__ void rescale_to(float& m, float& s, float gmax) {
  if (gmax > m) {
    s *= expf(m - gmax);  // 0 while m is −∞
    m = gmax;
  }
}

// Row statistics of x [V] over the block: m = max x, s = Σ exp(x − m), sum = Σ x, in one read of
// the row. Returns true on thread 0, which alone holds the merged values; the others return false.
template <class T>
__device__ __forceinline__ bool block_row_stats(const T* __restrict__ x, int64_t V, bool vec,
                                                float& m, float& s, float& sum) {
  constexpr int K = kPack<T>;
  m = -INFINITY, s = 0.f, sum = 0.f;
  if (vec) {  // V % K == 0 and logits 16-byte aligned: every row is
    for (int64_t c = threadIdx.x; c < V / K; c += kThreads) {
      const Pack<T> p = load_pack(x + c * K);
      float f[K], gmax = -INFINITY;
#pragma unroll
      for (int e = 0; e < K; ++e) {
        f[e] = to_float(p.v[e]);
        gmax = fmaxf(gmax, f[e]);
        sum += f[e];
      }
      rescale_to(m, s, gmax);
      if (m != -INFINITY) {
#pragma unroll
        for (int e = 0; e < K; ++e) s += expf(f[e] - m);
      }
    }
  } else {
    for (int64_t v = threadIdx.x; v < V; v += kThreads) {
      const float f = to_float(x[v]);
      sum += f;
      rescale_to(m, s, f);
      if (m != -INFINITY) s += expf(f - m);
    }
  }

  // Block merge in a fixed order: xor-shuffles within warps, then warp 0 over the warps.
  __shared__ float sh_m[kThreads / 32], sh_s[kThreads / 32], sh_sum[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge(m, s, m2, s2);
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
  }
  if (lane == 0) {
    sh_m[warp] = m;
    sh_s[warp] = s;
    sh_sum[warp] = sum;
  }
  __syncthreads();
  if (threadIdx.x != 0) return false;
  m = sh_m[0], s = sh_s[0], sum = sh_sum[0];
  for (int w = 1; w < kThreads / 32; ++w) {
    merge(m, s, sh_m[w], sh_s[w]);
    sum += sh_sum[w];
  }
  return true;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets, int64_t V,
                   int32_t ignore_index, float eps, float* __restrict__ loss,
                   float* __restrict__ nll, float* __restrict__ lse, bool vec) {
  const int64_t n = blockIdx.x;
  const T* x = logits + n * V;
  float m, s, sum;
  if (!block_row_stats(x, V, vec, m, s, sum)) return;
  const float l = m + logf(s);
  lse[n] = l;
  const int32_t y = targets[n];
  if (y == ignore_index) {
    loss[n] = nll[n] = 0.f;
  } else if (y < 0 || y >= V) {
    loss[n] = nll[n] = NAN;
    g_invalid_target = 1;
  } else {
    const float row_nll = l - to_float(x[y]);
    nll[n] = row_nll;
    loss[n] = (1.f - eps) * row_nll + eps * (l - sum / float(V));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* logits, const int32_t* __restrict__ targets,
                    const float* __restrict__ lse, int64_t V, int32_t ignore_index,
                    float uniform, float gold, float scale, T* dlogits, bool vec,
                    int64_t vocab_offset, int64_t vocab_total) {
  constexpr int K = kPack<T>;
  const int64_t n = blockIdx.x;
  const T* x = logits + n * V;  // may alias dx: no __restrict__
  T* dx = dlogits + n * V;
  const int32_t y = targets[n];
  const bool ignored = y == ignore_index;
  const bool invalid = !ignored && (y < 0 || y >= vocab_total);
  const int64_t gold_col = int64_t(y) - vocab_offset;  // outside [0, V): another block's class
  if (invalid && threadIdx.x == 0) g_invalid_target = 1;
  const float l = lse[n];
  // dx for class v with logit xv; zero for ignored rows, NaN for invalid ones.
  auto grad = [&](int64_t v, float xv) -> float {
    if (ignored) return 0.f;
    if (invalid) return NAN;
    const float target = uniform + (v == gold_col ? gold : 0.f);
    return scale * (expf(xv - l) - target);
  };
  if (vec) {  // V % K == 0, logits and dlogits 16-byte aligned
    for (int64_t c = threadIdx.x; c < V / K; c += kThreads) {
      const Pack<T> p = load_pack(x + c * K);
      Pack<T> out;
#pragma unroll
      for (int e = 0; e < K; ++e) out.v[e] = from_float<T>(grad(c * K + e, to_float(p.v[e])));
      store_pack(dx + c * K, out);
    }
  } else {
    for (int64_t v = threadIdx.x; v < V; v += kThreads) {
      const float xv = to_float(x[v]);
      dx[v] = from_float<T>(grad(v, xv));
    }
  }
}

// Vocabulary-parallel stats of one block's row: {log Σ exp x, x[y − vocab_offset] or 0, Σ x}.
template <class T>
__global__ void __launch_bounds__(kThreads)
    partial_stats_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                         int64_t V, int32_t ignore_index, int64_t vocab_offset,
                         float* __restrict__ stats, bool vec) {
  const int64_t n = blockIdx.x;
  const T* x = logits + n * V;
  float m, s, sum;
  if (!block_row_stats(x, V, vec, m, s, sum)) return;
  const int32_t y = targets[n];
  const int64_t col = int64_t(y) - vocab_offset;
  float gold = 0.f;
  if (y != ignore_index && y < 0) {
    gold = NAN;
    g_invalid_target = 1;
  } else if (y != ignore_index && col >= 0 && col < V) {
    gold = to_float(x[col]);
  }
  stats[3 * n + 0] = m + logf(s);
  stats[3 * n + 1] = gold;
  stats[3 * n + 2] = sum;
}

// One thread per row n: the P ranks' stats [P, N, 3] merged in rank order (as the CPU twin).
__global__ void combine_stats_kernel(const float* __restrict__ st, const int32_t* __restrict__ targets,
                                     int64_t P, int64_t N, int32_t ignore_index,
                                     int64_t vocab_total, float eps, float* __restrict__ loss,
                                     float* __restrict__ nll, float* __restrict__ lse) {
  for (int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
       n += int64_t(gridDim.x) * blockDim.x) {
    float mx = st[3 * n];
    for (int64_t p = 1; p < P; ++p) mx = fmaxf(mx, st[(p * N + n) * 3]);
    float sum = 0.f, gold = 0.f, sum_x = 0.f;
    for (int64_t p = 0; p < P; ++p) {
      const float* s = st + (p * N + n) * 3;
      sum += mx == -INFINITY ? 0.f : expf(s[0] - mx);
      gold += s[1];
      sum_x += s[2];
    }
    const float l = mx == -INFINITY ? mx : mx + logf(sum);
    lse[n] = l;
    const int32_t y = targets[n];
    if (y == ignore_index) {
      loss[n] = nll[n] = 0.f;
    } else if (y < 0 || y >= vocab_total) {
      loss[n] = nll[n] = NAN;
      g_invalid_target = 1;
    } else {
      const float row_nll = l - gold;
      nll[n] = row_nll;
      loss[n] = (1.f - eps) * row_nll + eps * (l - sum_x / float(vocab_total));
    }
  }
}

void check_rows(int64_t N, const char* op) {
  TFM_CHECK(N <= 0x7fffffff, op, ": the CUDA twin runs one block per row, at most 2^31 − 1 rows; "
            "got ", N);
}

}  // namespace

// Shapes, dtypes and devices were checked by the public dispatcher (cross_entropy_cpu.cpp).
void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                           int32_t ignore_index, double smoothing, const Tensor& loss,
                           const Tensor& nll, const Tensor& lse) {
  const char* op = "cross_entropy_forward";
  const int64_t N = logits.dim(0), V = logits.dim(1);
  check_rows(N, op);
  expect_dtype(loss, DType::f32, op, "loss");
  expect_dtype(nll, DType::f32, op, "nll");
  expect_dtype(lse, DType::f32, op, "lse");
  if (N == 0) return;
  dispatch_gpu_float(logits.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = V % kPack<T> == 0 && aligned16(logits.data);
    launch_kernel(forward_kernel<T>, unsigned(N), kThreads, 0, stream_of(ctx),
                  static_cast<const T*>(logits.data), targets.as<int32_t>(), V, ignore_index,
                  float(smoothing), loss.as<float>(), nll.as<float>(), lse.as<float>(), vec);
    check_launch(op);
  });
}

void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, int32_t ignore_index, double smoothing,
                            double grad_scale, const Tensor& dlogits, int64_t vocab_offset,
                            int64_t vocab_total) {
  const char* op = "cross_entropy_backward";
  const int64_t N = logits.dim(0), V = logits.dim(1);
  check_rows(N, op);
  expect_dtype(lse, DType::f32, op, "lse");
  if (N == 0) return;
  // As the CPU twin: the smoothed target ε/V of every class and the gold class's extra 1 − ε,
  // computed in double and rounded once.
  const float uniform = float(smoothing / double(vocab_total));
  const float gold = float(1.0 - smoothing);
  dispatch_gpu_float(logits.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = V % kPack<T> == 0 && aligned16(logits.data) && aligned16(dlogits.data);
    launch_kernel(backward_kernel<T>, unsigned(N), kThreads, 0, stream_of(ctx),
                  static_cast<const T*>(logits.data), targets.as<int32_t>(), lse.as<float>(), V,
                  ignore_index, uniform, gold, float(grad_scale), static_cast<T*>(dlogits.data),
                  vec, vocab_offset, vocab_total);
    check_launch(op);
  });
}

void cross_entropy_partial_stats(const Context& ctx, const Tensor& logits_local,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_offset,
                                 const Tensor& stats) {
  const char* op = "cross_entropy_partial_stats";
  const int64_t N = logits_local.dim(0), V = logits_local.dim(1);
  check_rows(N, op);
  expect_dtype(stats, DType::f32, op, "stats");
  if (N == 0) return;
  dispatch_gpu_float(logits_local.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = V % kPack<T> == 0 && aligned16(logits_local.data);
    launch_kernel(partial_stats_kernel<T>, unsigned(N), kThreads, 0, stream_of(ctx),
                  static_cast<const T*>(logits_local.data), targets.as<int32_t>(), V, ignore_index,
                  vocab_offset, stats.as<float>(), vec);
    check_launch(op);
  });
}

void cross_entropy_combine_stats(const Context& ctx, const Tensor& stats_all,
                                 const Tensor& targets, int32_t ignore_index, int64_t vocab_total,
                                 double smoothing, const Tensor& loss, const Tensor& nll,
                                 const Tensor& lse) {
  const char* op = "cross_entropy_combine_stats";
  const int64_t P = stats_all.dim(0), N = stats_all.dim(1);
  expect_dtype(stats_all, DType::f32, op, "stats_all");
  if (N == 0) return;
  launch_kernel(combine_stats_kernel, grid_for(N, kThreads), kThreads, 0, stream_of(ctx),
                stats_all.as<float>(), targets.as<int32_t>(), P, N, ignore_index, vocab_total,
                float(smoothing), loss.as<float>(), nll.as<float>(), lse.as<float>());
  check_launch(op);
}

bool cross_entropy_invalid_target_seen(bool clear) {
  check_cuda(cudaDeviceSynchronize(), "cross_entropy_invalid_target_seen");
  int seen = 0;
  check_cuda(cudaMemcpyFromSymbol(&seen, g_invalid_target, sizeof seen),
             "cross_entropy_invalid_target_seen: reading the flag");
  if (clear && seen) {
    const int zero = 0;
    check_cuda(cudaMemcpyToSymbol(g_invalid_target, &zero, sizeof zero),
               "cross_entropy_invalid_target_seen: clearing the flag");
  }
  return seen != 0;
}

}  // namespace tfm::cuda
