// CPU twin of the optimiser ops (kernels/optimizer/optimizer.h) and the dispatchers.
//   adam_step: per element i, in the accumulation type (f32 for f32 buffers, f64 for f64):
//     m_i = β1·m_i + (1 − β1)·g_i;  v_i = β2·v_i + (1 − β2)·g_i²
//     p_i −= lr · ( (m_i / (1 − β1^t)) / (sqrt(v_i / (1 − β2^t)) + ε)  +  wd·p_i )
//   with p_i on the right the value before the step (decoupled weight decay, as AdamW).
//   The bf16/fp16 working copy is a GPU matter: on CPU it must be left undefined.
//   clip_grad_norm: composed from sum_squares and scale_inplace (kernels/elementwise), so it runs
//   wherever those do.
#include <cmath>
#include <utility>

#include "kernels/core/parallel.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/optimizer/optimizer.h"
#include "kernels/optimizer/optimizer_cuda.h"

namespace tfm {

namespace {

// kDecay (wd > 0) is a template argument rather than a test in the loop, and the lambda
// captures by value: both, with -fno-math-errno for the sqrt (kernels/CMakeLists.txt), let GCC
// vectorise the loop. The arithmetic per element is the same either way.
template <class T, bool kDecay>
void adam_cpu(const AdamHyper& h, T* p, const T* g, T* m, T* v, int64_t n) {
  using A = acc_t<T>;
  const A beta1 = A(h.beta1), beta2 = A(h.beta2);
  const A lr = A(h.lr), eps = A(h.eps), wd = A(h.weight_decay);
  // Bias corrections in double: β^t for large t underflows gracefully to 0 (correction 1).
  const A correction1 = A(1.0 - std::pow(h.beta1, double(h.step)));
  const A correction2 = A(1.0 - std::pow(h.beta2, double(h.step)));
  auto update_element = [=](int64_t i) {
    const A gi = A(g[i]);
    const A mi = beta1 * A(m[i]) + (A(1) - beta1) * gi;
    const A vi = beta2 * A(v[i]) + (A(1) - beta2) * gi * gi;
    m[i] = T(mi);
    v[i] = T(vi);
    const A pi = A(p[i]);
    A update = (mi / correction1) / (std::sqrt(vi / correction2) + eps);
    if constexpr (kDecay) update += wd * pi;
    p[i] = T(pi - lr * update);
  };
  // Small buffers run inline: forking a thread team costs more than 2^14 updates.
  if (n < (int64_t(1) << 14)) {
    for (int64_t i = 0; i < n; ++i) update_element(i);
  } else {
    parallel_for(n, update_element);
  }
}

}  // namespace

void adam_step(const Context& ctx, const AdamHyper& h, const Tensor& params, const Tensor& grads,
               const Tensor& m, const Tensor& v, const Tensor& working_copy) {
  const char* op = "adam_step";
  const std::pair<const Tensor*, const char*> state[] = {
      {&params, "params"}, {&grads, "grads"}, {&m, "m"}, {&v, "v"}};
  for (auto [t, name] : state) {
    expect_device(ctx, *t, op, name);
    TFM_CHECK(t->defined(), op, ": ", name, " is required");
    expect_same_dtype(params, *t, op, name);
    TFM_CHECK(t->numel() == params.numel(), op, ": ", name, " has ", t->numel(),
              " elements, params has ", params.numel());
  }
  expect_device(ctx, working_copy, op, "working_copy");
  TFM_CHECK(h.step >= 1, op, ": step ", h.step, " must be >= 1 (bias correction divides by 1 − β^t)");
  TFM_CHECK(h.beta1 >= 0.0 && h.beta1 < 1.0 && h.beta2 >= 0.0 && h.beta2 < 1.0, op, ": betas (",
            h.beta1, ", ", h.beta2, ") must lie in [0, 1)");
  TFM_CHECK(h.eps >= 0.0 && h.weight_decay >= 0.0 && std::isfinite(h.lr), op,
            ": needs eps >= 0, weight_decay >= 0 and a finite lr; got eps ", h.eps,
            ", weight_decay ", h.weight_decay, ", lr ", h.lr);
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::adam_step(ctx, h, params, grads, m, v, working_copy);
#else
    no_cuda_twin(op);
#endif
  }
  TFM_CHECK(!working_copy.defined(), op,
            ": a bf16/fp16 working copy is a GPU matter; on CPU pass none (got ",
            dtype_name(working_copy.dtype), " ", working_copy.shape_str(), ")");
  dispatch_cpu_float(params.dtype, op, [&](auto zero) {
    using T = decltype(zero);
    // The test in the accumulation type: a weight decay that rounds to 0 there is none.
    if (acc_t<T>(h.weight_decay) > acc_t<T>(0))
      adam_cpu<T, true>(h, params.as<T>(), grads.as<T>(), m.as<T>(), v.as<T>(), params.numel());
    else
      adam_cpu<T, false>(h, params.as<T>(), grads.as<T>(), m.as<T>(), v.as<T>(), params.numel());
  });
}

double clip_grad_norm(const Context& ctx, const Tensor& grads, double max_norm) {
  const double norm = std::sqrt(sum_squares(ctx, grads));
  // A non-finite norm means an overflow somewhere: scaling would spread NaN over every
  // gradient, so leave them and let the caller skip the step.
  if (!std::isfinite(norm)) return norm;
  if (max_norm > 0.0 && norm > max_norm) scale_inplace(ctx, grads, max_norm / norm);
  return norm;
}

}  // namespace tfm
