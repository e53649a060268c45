// CUDA twin of adam_step; contract in optimizer.h. Per element i, in fp32, exactly the CPU
// twin's update (optimizer_cpu.cpp):
//   m_i = β1·m_i + (1 − β1)·g_i;  v_i = β2·v_i + (1 − β2)·g_i²
//   p_i −= lr · ( (m_i / (1 − β1^t)) / (sqrt(v_i / (1 − β2^t)) + ε)  +  wd·p_i )
// with the bias corrections computed on the host in double, and w_i = p_i rounded to the working
// copy's dtype. IEEE division and square root (no fast math), so the CUDA and CPU twins differ
// only where the compilers contract a·b + c differently.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/core/cuda_common.cuh"
#include "kernels/optimizer/optimizer_cuda.h"

namespace tfm::cuda {

namespace {

constexpr int kThreads = 256;

struct AdamConst {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;  // 1 − β in f32, as the CPU twin forms them
  float lr, eps, wd;
  float correction1, correction2;          // 1 − β^t
};

__device__ __forceinline__ void update(float& p, float g, float& m, float& v, const AdamConst& k) {
  const float mi = k.beta1 * m + k.one_minus_beta1 * g;
  const float vi = k.beta2 * v + k.one_minus_beta2 * g * g;
  m = mi;
  v = vi;
  float step = (mi / k.correction1) / (sqrtf(vi / k.correction2) + k.eps);
  if (k.wd > 0.f) step += k.wd * p;
  p = p - k.lr * step;
}

// Four working-copy elements, stored at once (alignment 4·sizeof(W), checked on the host).
template <class W>
struct alignas(4 * sizeof(W)) Quad {
  W v[4];
};

// w may be null (no working copy). vec: p, g, m, v 16-byte aligned and w aligned to a Quad.
template <class W>
__global__ void __launch_bounds__(kThreads)
    adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                float* __restrict__ v, W* __restrict__ w, int64_t n, AdamConst k, bool vec) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  const int64_t first = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  int64_t tail = 0;  // elements before `tail` were done by the vector loop
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t i = first; i < n4; i += stride) {
      float4 P = reinterpret_cast<const float4*>(p)[i];
      const float4 G = reinterpret_cast<const float4*>(g)[i];
      float4 M = reinterpret_cast<const float4*>(m)[i];
      float4 V = reinterpret_cast<const float4*>(v)[i];
      update(P.x, G.x, M.x, V.x, k);
      update(P.y, G.y, M.y, V.y, k);
      update(P.z, G.z, M.z, V.z, k);
      update(P.w, G.w, M.w, V.w, k);
      reinterpret_cast<float4*>(p)[i] = P;
      reinterpret_cast<float4*>(m)[i] = M;
      reinterpret_cast<float4*>(v)[i] = V;
      if (w) {
        Quad<W> q;
        q.v[0] = from_float<W>(P.x);
        q.v[1] = from_float<W>(P.y);
        q.v[2] = from_float<W>(P.z);
        q.v[3] = from_float<W>(P.w);
        reinterpret_cast<Quad<W>*>(w)[i] = q;
      }
    }
    tail = n4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) {
    float pi = p[i], mi = m[i], vi = v[i];
    update(pi, g[i], mi, vi, k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if (w) w[i] = from_float<W>(pi);
  }
}

bool aligned(const void* ptr, size_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

}  // namespace

// Hyper-parameters, counts and devices were checked by the public dispatcher.
void adam_step(const Context& ctx, const AdamHyper& h, const Tensor& params, const Tensor& grads,
               const Tensor& m, const Tensor& v, const Tensor& working_copy) {
  const char* op = "adam_step";
  TFM_CHECK(params.dtype == DType::f32, op,
            ": the CUDA twin updates f32 master weights and moments, got ",
            dtype_name(params.dtype));
  const int64_t n = params.numel();
  if (working_copy.defined()) {
    TFM_CHECK(is_gpu_float(working_copy.dtype), op, ": working_copy must be bf16, f16 or f32, got ",
              dtype_name(working_copy.dtype));
    TFM_CHECK(working_copy.numel() == n, op, ": working_copy has ", working_copy.numel(),
              " elements, params has ", n);
  }
  if (n == 0) return;
  AdamConst k;
  k.beta1 = float(h.beta1);
  k.beta2 = float(h.beta2);
  k.one_minus_beta1 = 1.f - k.beta1;
  k.one_minus_beta2 = 1.f - k.beta2;
  k.lr = float(h.lr);
  k.eps = float(h.eps);
  k.wd = float(h.weight_decay);
  k.correction1 = float(1.0 - std::pow(h.beta1, double(h.step)));
  k.correction2 = float(1.0 - std::pow(h.beta2, double(h.step)));

  float* p = params.as<float>();
  const float* g = grads.as<float>();
  float* mp = m.as<float>();
  float* vp = v.as<float>();
  const bool vec4 = aligned16(p) && aligned16(g) && aligned16(mp) && aligned16(vp);
  auto launch = [&](auto* w) {
    using W = std::remove_pointer_t<decltype(w)>;
    const bool vec = vec4 && (w == nullptr || aligned(w, 4 * sizeof(W)));
    const unsigned grid = grid_for(vec ? (n + 3) / 4 : n, kThreads);
    launch_kernel(adam_kernel<W>, grid, kThreads, 0, stream_of(ctx), p, g, mp, vp, w, n, k, vec);
    check_launch(op);
  };
  if (!working_copy.defined()) return launch(static_cast<float*>(nullptr));
  dispatch_gpu_float(working_copy.dtype, op, [&](auto tag) {
    using W = typename decltype(tag)::type;
    launch(static_cast<W*>(working_copy.data));
  });
}

}  // namespace tfm::cuda
