// GPU tests of the cross-entropy CUDA twin against the CPU twin (in f64 on the logits rounded to
// the GPU's dtype): loss, nll, lse and dlogits for f32, bf16 and f16, vocabularies that do and
// do not fill 16-byte vectors, misaligned logits (element path), in-place backward (dlogits
// aliasing logits), ignored rows, label smoothing on and off, and invalid target ids (NaN rows
// and the device flag, no crash); vocabulary-parallel partial stats, combine and block backward.
// Outputs are poisoned (NaN) first. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "kernels/core/gpu_testing.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/cross_entropy/cross_entropy_cuda.h"
#endif

namespace tfm {
namespace {

namespace gt = gpu_testing;

constexpr int32_t kIgnore = 1;  // a padding id inside [0, V), as in real vocabularies

bool invalid_target_seen() {
#ifdef TFM_HAVE_CUDA
  return cuda::cross_entropy_invalid_target_seen(true);
#else
  return false;
#endif
}

Buffer make_targets(int64_t N, int64_t V, uint32_t seed) {
  Buffer t(DType::i32, {N});
  std::mt19937 rng(seed);
  for (int64_t n = 0; n < N; ++n)
    t.as<int32_t>()[n] = (V > 1 && n % 5 == 3) ? kIgnore : int32_t(rng() % uint32_t(V));
  return t;
}

// A device copy of host logits in dtype dt, placed one element past a 16-byte boundary when
// `misaligned` (so the kernels must take their element-wise path). `storage` owns the memory.
Tensor logits_on_device(const Tensor& host, DType dt, bool misaligned, Buffer& storage) {
  const int64_t N = host.dim(0), V = host.dim(1);
  storage = Buffer(dt, {N * V + 16}, Device::cuda);
  Tensor t(static_cast<char*>(storage.tensor().data) + (misaligned ? dtype_size(dt) : 0), dt,
           Device::cuda, {N, V});
  Buffer staged = gt::convert(host, dt);
  if (t.bytes()) copy_to_device(t.data, staged.tensor().data, t.bytes());
  return t;
}

// max_i |a_i − e_i| / max(|e_i|, floor); NaN is an infinite error.
double rel_error(const Tensor& a, const Tensor& e, double floor) {
  double worst = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    const double x = a.as<double>()[i], y = e.as<double>()[i];
    const double err = std::abs(x - y) / std::max(std::abs(y), floor);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

double max_abs(const Tensor& e) {
  double m = 0;
  for (int64_t i = 0; i < e.numel(); ++i) m = std::max(m, std::abs(e.as<double>()[i]));
  return m;
}

void check_case(int64_t N, int64_t V, double eps, DType dt, bool misaligned, bool in_place,
                uint64_t seed) {
  SCOPED_TRACE(cat("N=", N, " V=", V, " eps=", eps, " dtype=", dtype_name(dt),
                   misaligned ? " misaligned" : "", in_place ? " in-place" : ""));
  gt::GpuEnv env;
  Context cpu = testing::cpu_context();
  Buffer host = testing::random_buffer<float>({N, V}, seed, -8.0, 8.0);
  Buffer targets = make_targets(N, V, uint32_t(seed));
  Buffer d_targets = gt::to_device(targets);
  Buffer storage;
  Tensor d_logits = logits_on_device(host, dt, misaligned, storage);
  Buffer r_logits = gt::rounded(host, dt, DType::f64);

  Buffer d_loss(DType::f32, {N}, Device::cuda), d_nll(DType::f32, {N}, Device::cuda);
  Buffer d_lse(DType::f32, {N}, Device::cuda);
  for (const Buffer* b : {&d_loss, &d_nll, &d_lse}) gt::poison_device(*b);
  cross_entropy_forward(env.ctx, d_logits, d_targets, kIgnore, eps, d_loss, d_nll, d_lse);
  Buffer w_loss(DType::f64, {N}), w_nll(DType::f64, {N}), w_lse(DType::f64, {N});
  cross_entropy_forward(cpu, r_logits, targets, kIgnore, eps, w_loss, w_nll, w_lse);
  // The GPU sees exactly the rounded logits; only fp32 sums differ. Relative above 1, absolute
  // below (values cross zero).
  EXPECT_LE(rel_error(gt::to_host(d_loss, DType::f64), w_loss, 1.0), 1e-5) << "loss";
  EXPECT_LE(rel_error(gt::to_host(d_nll, DType::f64), w_nll, 1.0), 1e-5) << "nll";
  EXPECT_LE(rel_error(gt::to_host(d_lse, DType::f64), w_lse, 1.0), 1e-5) << "lse";

  const double grad_scale = 0.37;
  Buffer d_out_storage;
  Tensor d_dlogits = d_logits;  // in place: dlogits aliases logits
  if (!in_place) {
    d_out_storage = Buffer(dt, {N, V}, Device::cuda);
    d_dlogits = d_out_storage;
    gt::poison_device(d_dlogits);
  }
  cross_entropy_backward(env.ctx, d_logits, d_targets, d_lse, kIgnore, eps, grad_scale,
                         d_dlogits);
  Buffer w_grad(DType::f64, {N, V});
  cross_entropy_backward(cpu, r_logits, targets, w_lse, kIgnore, eps, grad_scale, w_grad);
  Buffer got = gt::to_host(d_dlogits, DType::f64);
  // Relative per element, with a floor of 1% of the largest gradient: softmax spans many orders
  // of magnitude and the 16-bit dtypes round each element. In f32 the bound is the lse the
  // forward stored in f32: |lse| ≤ ~16 carries up to ~1e-6 absolute error, i.e. a relative
  // error of every probability, which p − q (cancelling near the target) shows against the
  // 1% floor as up to 1e-6 / 1e-2 = 1e-4.
  const double grad_tol = dt == DType::f32 ? 1e-4 : gt::tolerance(dt);
  EXPECT_LE(rel_error(got, w_grad, 1e-2 * std::max(max_abs(w_grad), 1e-6)), grad_tol)
      << "dlogits";
  for (int64_t n = 0; n < N; ++n) {
    if (targets.as<int32_t>()[n] != kIgnore) continue;
    for (int64_t v = 0; v < V; ++v)
      ASSERT_EQ(got.as<double>()[n * V + v], 0.0) << "ignored row " << n << " is not zero";
  }
}

TEST(CrossEntropyGpu, MatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  invalid_target_seen();  // start clean
  uint64_t seed = 1;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t N : {1, 7, 64})
      for (int64_t V : {1, 5, 8, 33, 1000, 4096})
        for (double eps : {0.0, 0.1}) {
          const bool misaligned = seed % 3 == 0, in_place = seed % 2 == 0;
          check_case(N, V, eps, dt, misaligned, in_place, seed++);
        }
  EXPECT_FALSE(invalid_target_seen()) << "valid targets raised the invalid-target flag";
}

TEST(CrossEntropyGpu, LargeVocabularies) {
  TFM_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t V : {32000, 37003}) check_case(16, V, 0.1, dt, false, seed % 2 == 0, seed++);
  check_case(16, 32000, 0.1, DType::bf16, true, false, seed++);
}

// Vocabulary-parallel: per block, the CUDA partial stats match the CPU twin's; the CUDA combine
// of the gathered stats matches the CPU combine (and the unsharded forward); the CUDA backward
// of a block with the global lse matches the CPU twin's block. Uneven blocks, misaligned blocks.
void check_vocab_parallel(int64_t N, int64_t V, int64_t P, double eps, DType dt, uint64_t seed) {
  SCOPED_TRACE(cat("N=", N, " V=", V, " P=", P, " eps=", eps, " dtype=", dtype_name(dt)));
  gt::GpuEnv env;
  Context cpu = testing::cpu_context();
  Buffer host = testing::random_buffer<float>({N, V}, seed, -8.0, 8.0);
  Buffer targets = make_targets(N, V, uint32_t(seed));
  Buffer d_targets = gt::to_device(targets);
  Buffer r_full = gt::rounded(host, dt, DType::f64);
  Buffer w_loss(DType::f64, {N}), w_nll(DType::f64, {N}), w_lse(DType::f64, {N});
  cross_entropy_forward(cpu, r_full, targets, kIgnore, eps, w_loss, w_nll, w_lse);

  const int64_t chunk = (V + P - 1) / P;
  std::vector<Buffer> blocks;  // host f32 blocks
  Buffer d_stats_all(DType::f32, {P, N, 3}, Device::cuda);
  Buffer w_stats_all(DType::f64, {P, N, 3});
  for (int64_t p = 0; p < P; ++p) {
    const int64_t v0 = std::min(V, p * chunk), w = std::min(V, v0 + chunk) - v0;
    Buffer b(DType::f32, {N, w});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t v = 0; v < w; ++v) b.as<float>()[n * w + v] = host.as<float>()[n * V + v0 + v];
    Buffer storage;
    Tensor d_b = logits_on_device(b, dt, p % 2 == 1, storage);
    Tensor d_st = d_stats_all.tensor().rows(p, 1);
    d_st = Tensor(d_st.data, DType::f32, Device::cuda, {N, 3});
    gt::poison_device(d_st);
    cross_entropy_partial_stats(env.ctx, d_b, d_targets, kIgnore, v0, d_st);
    Tensor w_st(w_stats_all.as<double>() + p * N * 3, DType::f64, Device::cpu, {N, 3});
    cross_entropy_partial_stats(cpu, gt::rounded(b, dt, DType::f64), targets, kIgnore, v0, w_st);
    Buffer got = gt::to_host(d_st, DType::f64);
    Buffer r_b = gt::rounded(b, dt, DType::f64);
    for (int64_t n = 0; n < N; ++n) {
      if (targets.as<int32_t>()[n] == kIgnore) continue;  // combine ignores those rows
      // stats[2] = Σ x over the block: an fp32 sum of terms of both signs, whose rounding
      // scales with Σ|x| rather than with the (cancelling) result.
      double sum_abs = 0;
      for (int64_t v = 0; v < w; ++v) sum_abs += std::abs(r_b.as<double>()[n * w + v]);
      for (int k = 0; k < 3; ++k) {
        const double g = got.as<double>()[3 * n + k], e = w_st.as<double>()[3 * n + k];
        const double tol = 1e-5 * std::max(1.0, std::abs(e)) + (k == 2 ? 1e-7 * sum_abs : 0.0);
        ASSERT_NEAR(g, e, tol) << "stats[" << n << "][" << k << "]";
      }
    }
    blocks.push_back(std::move(b));
  }
  Buffer d_loss(DType::f32, {N}, Device::cuda), d_nll(DType::f32, {N}, Device::cuda);
  Buffer d_lse(DType::f32, {N}, Device::cuda);
  for (const Buffer* b : {&d_loss, &d_nll, &d_lse}) gt::poison_device(*b);
  cross_entropy_combine_stats(env.ctx, d_stats_all, d_targets, kIgnore, V, eps, d_loss, d_nll,
                              d_lse);
  EXPECT_LE(rel_error(gt::to_host(d_loss, DType::f64), w_loss, 1.0), 1e-5) << "loss";
  EXPECT_LE(rel_error(gt::to_host(d_nll, DType::f64), w_nll, 1.0), 1e-5) << "nll";
  EXPECT_LE(rel_error(gt::to_host(d_lse, DType::f64), w_lse, 1.0), 1e-5) << "lse";

  const double grad_scale = 0.37;
  for (int64_t p = 0; p < P; ++p) {
    const int64_t v0 = std::min(V, p * chunk), w = blocks[size_t(p)].tensor().dim(1);
    Buffer storage;
    Tensor d_b = logits_on_device(blocks[size_t(p)], dt, p % 2 == 0, storage);
    Buffer d_grad(dt, {N, w}, Device::cuda);
    gt::poison_device(d_grad);
    cross_entropy_backward(env.ctx, d_b, d_targets, d_lse, kIgnore, eps, grad_scale, d_grad, v0,
                           V);
    Buffer w_grad(DType::f64, {N, w});
    cross_entropy_backward(cpu, gt::rounded(blocks[size_t(p)], dt, DType::f64), targets, w_lse,
                           kIgnore, eps, grad_scale, w_grad, v0, V);
    EXPECT_LE(rel_error(gt::to_host(d_grad, DType::f64), w_grad,
                        1e-2 * std::max(max_abs(w_grad), 1e-6)),
              gt::tolerance(dt))
        << "dlogits block " << p;
  }
}

TEST(CrossEntropyGpu, VocabParallelMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  invalid_target_seen();
  uint64_t seed = 200;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t P : {1, 2, 3, 4})
      for (double eps : {0.0, 0.1}) {
        check_vocab_parallel(7, 37, P, eps, dt, seed++);
        check_vocab_parallel(16, 4096, P, eps, dt, seed++);
      }
  EXPECT_FALSE(invalid_target_seen()) << "valid targets raised the invalid-target flag";
}

TEST(CrossEntropyGpu, InvalidTargetsGiveNanRowsAndRaiseTheFlag) {
  TFM_SKIP_WITHOUT_GPU();
  invalid_target_seen();
  const int64_t N = 4, V = 16;
  gt::GpuEnv env;
  Buffer host = testing::random_buffer<float>({N, V}, 9, -3.0, 3.0);
  Buffer targets(DType::i32, {N});
  const int32_t ids[] = {3, int32_t(V) + 2, kIgnore, -5};
  std::copy(ids, ids + N, targets.as<int32_t>());
  Buffer d_logits = gt::to_device(host, DType::bf16), d_targets = gt::to_device(targets);
  Buffer d_loss(DType::f32, {N}, Device::cuda), d_nll(DType::f32, {N}, Device::cuda);
  Buffer d_lse(DType::f32, {N}, Device::cuda);
  cross_entropy_forward(env.ctx, d_logits, d_targets, kIgnore, 0.1, d_loss, d_nll, d_lse);
  EXPECT_TRUE(invalid_target_seen());
  EXPECT_FALSE(invalid_target_seen()) << "the flag was not cleared";
  Buffer loss = gt::to_host(d_loss), nll = gt::to_host(d_nll);
  EXPECT_TRUE(std::isfinite(loss.as<float>()[0]) && loss.as<float>()[0] > 0.f);
  EXPECT_TRUE(std::isnan(loss.as<float>()[1]) && std::isnan(nll.as<float>()[1]));
  EXPECT_EQ(loss.as<float>()[2], 0.f);
  EXPECT_TRUE(std::isnan(loss.as<float>()[3]) && std::isnan(nll.as<float>()[3]));

  Buffer d_grad(DType::bf16, {N, V}, Device::cuda);
  cross_entropy_backward(env.ctx, d_logits, d_targets, d_lse, kIgnore, 0.1, 1.0, d_grad);
  EXPECT_TRUE(invalid_target_seen());
  Buffer grad = gt::to_host(d_grad);
  for (int64_t v = 0; v < V; ++v) {
    EXPECT_TRUE(std::isfinite(grad.as<float>()[0 * V + v]));
    EXPECT_TRUE(std::isnan(grad.as<float>()[1 * V + v]));
    EXPECT_EQ(grad.as<float>()[2 * V + v], 0.f);
    EXPECT_TRUE(std::isnan(grad.as<float>()[3 * V + v]));
  }
}

}  // namespace
}  // namespace tfm
