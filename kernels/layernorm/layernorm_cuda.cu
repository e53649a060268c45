// CUDA twin of layer normalisation (kernels/layernorm/layernorm_cuda.h has the contract).
// Row kernels: one warp per row (grid-stride over rows), lanes stride the row — on 16-byte packs
// when the width is a multiple of the pack and the pointers are aligned, element by element
// otherwise. Each pass re-reads the row (it stays in L1/L2), which keeps registers independent of
// the width. The butterfly warp sums fix the order, so results are deterministic.
#include "kernels/core/cuda_common.cuh"
#include "kernels/layernorm/layernorm_cuda.h"

namespace tfm::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps, 8 rows per block at a time
constexpr int kWarps = kThreads / 32;

// Σ_j f(j, x_j) over one row, each lane taking packs (vec) or elements in turn.
template <class T, class F>
__device__ __forceinline__ float row_reduce(const T* xr, int64_t width, bool vec, int lane, F f) {
  float s = 0.0f;
  if (vec) {
    for (int64_t p = lane; p < width / kPack<T>; p += 32) {
      Pack<T> v = load_pack(xr + p * kPack<T>);
#pragma unroll
      for (int e = 0; e < kPack<T>; ++e) s += f(p * kPack<T> + e, to_float(v.v[e]));
    }
  } else {
    for (int64_t j = lane; j < width; j += 32) s += f(j, to_float(xr[j]));
  }
  return warp_sum(s);
}

template <class T, class G>
__global__ void ln_forward_kernel(const T* x, const G* gamma, const G* beta, float eps, T* y,
                                  float* mean, float* rstd, int64_t rows, int64_t width,
                                  bool vec) {
  int lane = threadIdx.x & 31;
  int64_t warps = int64_t(gridDim.x) * kWarps;
  for (int64_t r = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * width;
    T* yr = y + r * width;
    float mu = row_reduce(xr, width, vec, lane, [](int64_t, float v) { return v; }) / float(width);
    // Second pass on centred values: no cancellation when |mean| ≫ std.
    float sq = row_reduce(xr, width, vec, lane, [mu](int64_t, float v) {
      float c = v - mu;
      return c * c;
    });
    float rs = 1.0f / sqrtf(sq / float(width) + eps);
    if (vec) {
      for (int64_t p = lane; p < width / kPack<T>; p += 32) {
        Pack<T> v = load_pack(xr + p * kPack<T>), out;
#pragma unroll
        for (int e = 0; e < kPack<T>; ++e) {
          int64_t j = p * kPack<T> + e;
          out.v[e] = from_float<T>((to_float(v.v[e]) - mu) * rs * to_float(gamma[j]) +
                                   to_float(beta[j]));
        }
        store_pack(yr + p * kPack<T>, out);
      }
    } else {
      for (int64_t j = lane; j < width; j += 32)
        yr[j] = from_float<T>((to_float(xr[j]) - mu) * rs * to_float(gamma[j]) +
                              to_float(beta[j]));
    }
    if (lane == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// dx for one row per warp. Pass 1 reads dy and x; pass 2 reads dy[j] and x[j], then writes
// dx[j] in the same thread, so dx may alias dy.
template <class T, class G>
__global__ void ln_backward_dx_kernel(const T* dy, const T* x, const G* gamma, const float* mean,
                                      const float* rstd, T* dx, int64_t rows, int64_t width,
                                      bool vec) {
  int lane = threadIdx.x & 31;
  int64_t warps = int64_t(gridDim.x) * kWarps;
  for (int64_t r = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * width;
    const T* dyr = dy + r * width;
    T* dxr = dx + r * width;
    float mu = mean[r], rs = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    if (vec) {
      for (int64_t p = lane; p < width / kPack<T>; p += 32) {
        Pack<T> xv = load_pack(xr + p * kPack<T>), dv = load_pack(dyr + p * kPack<T>);
#pragma unroll
        for (int e = 0; e < kPack<T>; ++e) {
          float g = to_float(dv.v[e]) * to_float(gamma[p * kPack<T> + e]);
          sum_g += g;
          sum_gx += g * (to_float(xv.v[e]) - mu) * rs;
        }
      }
    } else {
      for (int64_t j = lane; j < width; j += 32) {
        float g = to_float(dyr[j]) * to_float(gamma[j]);
        sum_g += g;
        sum_gx += g * (to_float(xr[j]) - mu) * rs;
      }
    }
    float mean_g = warp_sum(sum_g) / float(width), mean_gx = warp_sum(sum_gx) / float(width);
    if (vec) {
      for (int64_t p = lane; p < width / kPack<T>; p += 32) {
        Pack<T> xv = load_pack(xr + p * kPack<T>), dv = load_pack(dyr + p * kPack<T>), out;
#pragma unroll
        for (int e = 0; e < kPack<T>; ++e) {
          float g = to_float(dv.v[e]) * to_float(gamma[p * kPack<T> + e]);
          float xhat = (to_float(xv.v[e]) - mu) * rs;
          out.v[e] = from_float<T>(rs * (g - mean_g - xhat * mean_gx));
        }
        store_pack(dxr + p * kPack<T>, out);
      }
    } else {
      for (int64_t j = lane; j < width; j += 32) {
        float g = to_float(dyr[j]) * to_float(gamma[j]);
        float xhat = (to_float(xr[j]) - mu) * rs;
        dxr[j] = from_float<T>(rs * (g - mean_g - xhat * mean_gx));
      }
    }
  }
}

// Parameter gradients, pass 1: block (32, 8) takes 32 columns of rows
// [chunk·kRowsPerChunk, +kRowsPerChunk); threadIdx.y strides the rows; the 8 partial sums are
// added in order into part_g/part_b [chunk][j].
constexpr int64_t kRowsPerChunk = 512;
constexpr int kColTile = 32, kRowLanes = 8;

template <class T>
__global__ void ln_param_partials_kernel(const T* dy, const T* x, const float* mean,
                                         const float* rstd, int64_t rows, int64_t width,
                                         float* part_g, float* part_b) {
  __shared__ float sg[kRowLanes][kColTile], sb[kRowLanes][kColTile];
  int64_t j = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  int64_t r0 = int64_t(blockIdx.y) * kRowsPerChunk;
  int64_t r1 = r0 + kRowsPerChunk < rows ? r0 + kRowsPerChunk : rows;
  float g = 0.0f, b = 0.0f;
  if (j < width) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      float d = to_float(dy[r * width + j]);
      g += d * ((to_float(x[r * width + j]) - mean[r]) * rstd[r]);
      b += d;
    }
  }
  sg[threadIdx.y][threadIdx.x] = g;
  sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && j < width) {
    float tg = 0.0f, tb = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowLanes; ++y) {
      tg += sg[y][threadIdx.x];
      tb += sb[y][threadIdx.x];
    }
    part_g[int64_t(blockIdx.y) * width + j] = tg;
    part_b[int64_t(blockIdx.y) * width + j] = tb;
  }
}

// Pass 2: out[j] += Σ_chunk part[chunk][j], chunks in order.
template <class O>
__global__ void ln_param_finish_kernel(const float* part, int64_t chunks, int64_t width, O* out) {
  int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= width) return;
  float t = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) t += part[c * width + j];
  out[j] = from_float<O>(to_float(out[j]) + t);
}

struct Dims {
  int64_t rows = 0, width = 0;
};

void expect_like(const Context& ctx, const Tensor& t, const Tensor& x, const char* op,
                 const char* arg) {
  TFM_CHECK(t.defined(), op, ": ", arg, " must be defined");
  expect_device(ctx, t, op, arg);
  expect_same_dtype(x, t, op, arg);
  TFM_CHECK(t.numel() == x.numel(), op, ": ", arg, " has shape ", t.shape_str(), ", expected ",
            x.shape_str());
}

// A parameter-shaped tensor [D] in x's dtype or f32.
void expect_param(const Context& ctx, const Tensor& t, const Tensor& x, int64_t width,
                  const char* op, const char* arg) {
  TFM_CHECK(t.defined(), op, ": ", arg, " must be defined");
  expect_device(ctx, t, op, arg);
  TFM_CHECK(t.dtype == x.dtype || t.dtype == DType::f32, op, ": ", arg, " is ",
            dtype_name(t.dtype), ", expected ", dtype_name(x.dtype), " or f32");
  TFM_CHECK(t.numel() == width, op, ": ", arg, " has shape ", t.shape_str(), ", expected [",
            width, "]");
}

Dims check_common(const Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                  const Tensor& rstd, const char* op) {
  TFM_CHECK(x.defined() && x.rank >= 1, op, ": x must be defined with rank >= 1");
  expect_device(ctx, x, op, "x");
  TFM_CHECK(is_gpu_float(x.dtype), op, ": the CUDA twin runs f32, bf16 or f16, got ",
            dtype_name(x.dtype));
  Dims d;
  d.width = x.dim(-1);
  TFM_CHECK(d.width > 0, op, ": x has no features, shape ", x.shape_str());
  d.rows = x.numel() / d.width;
  expect_param(ctx, gamma, x, d.width, op, "gamma");
  for (const Tensor* t : {&mean, &rstd}) {
    const char* arg = t == &mean ? "mean" : "rstd";
    TFM_CHECK(t->defined(), op, ": ", arg, " must be defined");
    expect_device(ctx, *t, op, arg);
    expect_dtype(*t, DType::f32, op, arg);
    TFM_CHECK(t->numel() == d.rows, op, ": ", arg, " has ", t->numel(), " values, expected ",
              d.rows, " (one per row)");
  }
  return d;
}

// Vector path: the width is a whole number of packs and every row pointer is 16-byte aligned.
bool use_vec(int64_t width, size_t elem_size, std::initializer_list<const void*> ptrs) {
  if ((width * int64_t(elem_size)) % 16 != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// Calls f(Tag<T>, Tag<G>) for x's dtype T and the parameter dtype G (f32 or T).
template <class F>
void dispatch_x_param(DType x, DType param, const char* op, F&& f) {
  dispatch_gpu_float(x, op, [&](auto tt) {
    using T = typename decltype(tt)::type;
    if (param == DType::f32) f(tt, Tag<float>{});
    else f(tt, Tag<T>{});
  });
}

}  // namespace

void layer_norm_forward(const Context& ctx, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, double eps, const Tensor& y, const Tensor& mean,
                        const Tensor& rstd) {
  const char* op = "layer_norm_forward";
  Dims d = check_common(ctx, x, gamma, mean, rstd, op);
  expect_param(ctx, beta, x, d.width, op, "beta");
  TFM_CHECK(beta.dtype == gamma.dtype, op, ": beta is ", dtype_name(beta.dtype), " but gamma is ",
            dtype_name(gamma.dtype));
  expect_like(ctx, y, x, op, "y");
  TFM_CHECK(eps >= 0, op, ": eps ", eps, " is negative");
  if (d.rows == 0) return;
  bool vec = use_vec(d.width, dtype_size(x.dtype), {x.data, y.data});
  unsigned grid = grid_for(d.rows, kWarps);
  dispatch_x_param(x.dtype, gamma.dtype, op, [&](auto tt, auto gt) {
    using T = typename decltype(tt)::type;
    using G = typename decltype(gt)::type;
    launch_kernel(ln_forward_kernel<T, G>, grid, kThreads, 0, stream_of(ctx),
                  static_cast<const T*>(x.data), static_cast<const G*>(gamma.data),
                  static_cast<const G*>(beta.data), float(eps), static_cast<T*>(y.data),
                  static_cast<float*>(mean.data), static_cast<float*>(rstd.data), d.rows, d.width,
                  vec);
  });
  check_launch(op);
}

void layer_norm_backward(const Context& ctx, const Tensor& dy, const Tensor& x,
                         const Tensor& gamma, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
  const char* op = "layer_norm_backward";
  Dims d = check_common(ctx, x, gamma, mean, rstd, op);
  expect_like(ctx, dy, x, op, "dy");
  expect_like(ctx, dx, x, op, "dx");
  if (dgamma.defined()) expect_param(ctx, dgamma, x, d.width, op, "dgamma");
  if (dbeta.defined()) expect_param(ctx, dbeta, x, d.width, op, "dbeta");
  if (d.rows == 0) return;
  cudaStream_t stream = stream_of(ctx);

  // Parameter gradients first: dx may alias dy.
  if (dgamma.defined() || dbeta.defined()) {
    int64_t chunks = (d.rows + kRowsPerChunk - 1) / kRowsPerChunk;
    int64_t col_tiles = (d.width + kColTile - 1) / kColTile;
    TFM_CHECK(chunks <= 65535 && col_tiles <= 0x7FFFFFFF, op, ": ", d.rows, " rows of width ",
              d.width, " exceed the parameter-gradient kernel's grid");
    float* part_g = static_cast<float*>(
        scratch(ctx, 2 * size_t(chunks * d.width) * sizeof(float), op));
    float* part_b = part_g + chunks * d.width;
    dispatch_gpu_float(x.dtype, op, [&](auto tt) {
      using T = typename decltype(tt)::type;
      launch_kernel(ln_param_partials_kernel<T>, dim3(unsigned(col_tiles), unsigned(chunks)),
                    dim3(kColTile, kRowLanes), 0, stream, static_cast<const T*>(dy.data),
                    static_cast<const T*>(x.data), static_cast<const float*>(mean.data),
                    static_cast<const float*>(rstd.data), d.rows, d.width, part_g, part_b);
    });
    check_launch(op);
    unsigned g2 = unsigned((d.width + kThreads - 1) / kThreads);
    auto finish = [&](const Tensor& out, const float* part) {
      if (!out.defined()) return;
      dispatch_gpu_float(out.dtype, op, [&](auto ot) {
        using O = typename decltype(ot)::type;
        launch_kernel(ln_param_finish_kernel<O>, g2, kThreads, 0, stream, part, chunks, d.width,
                      static_cast<O*>(out.data));
      });
      check_launch(op);
    };
    finish(dgamma, part_g);
    finish(dbeta, part_b);
  }

  bool vec = use_vec(d.width, dtype_size(x.dtype), {x.data, dy.data, dx.data});
  unsigned grid = grid_for(d.rows, kWarps);
  dispatch_x_param(x.dtype, gamma.dtype, op, [&](auto tt, auto gt) {
    using T = typename decltype(tt)::type;
    using G = typename decltype(gt)::type;
    launch_kernel(ln_backward_dx_kernel<T, G>, grid, kThreads, 0, stream,
                  static_cast<const T*>(dy.data), static_cast<const T*>(x.data),
                  static_cast<const G*>(gamma.data), static_cast<const float*>(mean.data),
                  static_cast<const float*>(rstd.data), static_cast<T*>(dx.data), d.rows, d.width,
                  vec);
  });
  check_launch(op);
}

}  // namespace tfm::cuda
