// GPU tests of the adam_step CUDA twin against the CPU twin (both f32, same inputs, several
// consecutive steps): parameters and moments agree to f32 rounding, with and without weight
// decay, for sizes that do and do not fill 4-wide vectors, aligned and misaligned buffers; the
// bf16/f16/f32 working copy equals the updated parameters rounded to its dtype, exactly.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/core/gpu_testing.h"
#include "kernels/optimizer/optimizer.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

namespace gt = gpu_testing;

// A device f32 vector of n elements holding `host`, one float past a 16-byte boundary when
// `misaligned`. `storage` owns the memory.
Tensor on_device(const Tensor& host, bool misaligned, Buffer& storage) {
  const int64_t n = host.numel();
  storage = Buffer(DType::f32, {n + 4}, Device::cuda);
  Tensor t(static_cast<float*>(storage.tensor().data) + (misaligned ? 1 : 0), DType::f32,
           Device::cuda, {n});
  copy_to_device(t.data, host.data, host.bytes());
  return t;
}

Buffer download(const Tensor& dev) {
  Buffer h(DType::f32, {dev.numel()});
  copy_to_host(h.tensor().data, dev.data, dev.bytes());
  return h;
}

// max_i |a_i − e_i| / max(|e_i|, 1e-30): f32 rounding differences only.
double rel_error(const Tensor& a, const Tensor& e) {
  double worst = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const double x = a.as<float>()[i], y = e.as<float>()[i];
    const double err = std::abs(x - y) / std::max(std::abs(y), 1e-30);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

// `wc`: working copy dtype, or DType::i32 for none.
void check_adam(int64_t n, DType wc, bool misaligned, double weight_decay, uint64_t seed) {
  SCOPED_TRACE(cat("n=", n, " working copy=", wc == DType::i32 ? "none" : dtype_name(wc),
                   misaligned ? " misaligned" : "", " wd=", weight_decay));
  gt::GpuEnv env;
  Context cpu = testing::cpu_context();
  Buffer p = testing::random_buffer<float>({n}, seed, -1.0, 1.0);
  Buffer m = testing::random_buffer<float>({n}, seed + 1, -0.1, 0.1);
  Buffer v = testing::random_buffer<float>({n}, seed + 2, 0.0, 0.01);
  Buffer sp, sg, sm, sv;
  Tensor dp = on_device(p, misaligned, sp), dm = on_device(m, misaligned, sm);
  Tensor dv = on_device(v, misaligned, sv);
  Buffer d_wc;
  if (wc != DType::i32) {
    d_wc = Buffer(wc, {n}, Device::cuda);
    gt::poison_device(d_wc);
  }
  AdamHyper h;
  h.lr = 1e-3;
  h.weight_decay = weight_decay;
  for (int64_t step : {1, 2, 3, 1000}) {
    h.step = step;
    Buffer g = testing::random_buffer<float>({n}, seed + 10 + uint64_t(step), -0.5, 0.5);
    Tensor dg = on_device(g, misaligned, sg);
    adam_step(env.ctx, h, dp, dg, dm, dv, d_wc.tensor());
    adam_step(cpu, h, p, g, m, v);
  }
  EXPECT_LE(rel_error(download(dp), p), 1e-5) << "params";
  EXPECT_LE(rel_error(download(dm), m), 1e-5) << "m";
  EXPECT_LE(rel_error(download(dv), v), 1e-5) << "v";
  if (wc != DType::i32) {
    Buffer got = gt::to_host(d_wc);                       // f32 of the stored copy
    Buffer want = gt::rounded(download(dp), wc);          // the GPU's params, rounded
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(got.as<float>()[i], want.as<float>()[i]) << "working copy element " << i;
  }
}

TEST(OptimizerGpu, AdamMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  uint64_t seed = 1;
  for (int64_t n : {1, 3, 4, 5, 1000, 4099, (1 << 20) + 5})
    for (DType wc : {DType::i32, DType::bf16, DType::f16, DType::f32})
      for (int misaligned = 0; misaligned < 2; ++misaligned) {
        check_adam(n, wc, misaligned, seed % 2 ? 0.01 : 0.0, seed);
        seed += 100;
      }
}

TEST(OptimizerGpu, RejectsNonF32MasterWeights) {
  TFM_SKIP_WITHOUT_GPU();
  gt::GpuEnv env;
  Buffer p(DType::f64, {8}, Device::cuda), g(DType::f64, {8}, Device::cuda);
  Buffer m(DType::f64, {8}, Device::cuda), v(DType::f64, {8}, Device::cuda);
  AdamHyper h;
  h.lr = 1e-3;
  EXPECT_THROW(adam_step(env.ctx, h, p, g, m, v), Error);
}

}  // namespace
}  // namespace tfm
