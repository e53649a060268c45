#include <gtest/gtest.h>

#include "kernels/gemm/gemm.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

// C = op(A)·op(B) by the definition, in double.
template <class T>
void naive_gemm(const GemmShape& s, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                int64_t ldc) {
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        double av = s.trans_a ? a[p * lda + i] : a[i * lda + p];
        double bv = s.trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      c[i * ldc + j] = T(acc);
    }
}

TEST(Gemm, AllTransposesAndStridesMatchTheDefinition) {
  Context ctx = testing::cpu_context();
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple{1, 1, 1}, {7, 13, 5}, {33, 17, 65}}) {
        // Row strides wider than the matrix, as attention uses for one head's columns.
        int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
        Buffer a = testing::random_buffer<double>({(ta ? k : m) * lda}, 11);
        Buffer b = testing::random_buffer<double>({(tb ? n : k) * ldb}, 12);
        Buffer c(DType::f64, {m * ldc}), want(DType::f64, {m * ldc});
        GemmShape s{ta, tb, m, n, k, lda, ldb, ldc};
        gemm(ctx, DType::f64, s, 1.0, a.as<double>(), b.as<double>(), 0.0, c.as<double>());
        naive_gemm(s, a.as<double>(), lda, b.as<double>(), ldb, want.as<double>(), ldc);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j)
            ASSERT_NEAR(c.as<double>()[i * ldc + j], want.as<double>()[i * ldc + j], 1e-12)
                << "ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n << " k=" << k;
      }
}

TEST(Gemm, BetaAccumulates) {
  Context ctx = testing::cpu_context();
  Buffer a = testing::random_buffer<float>({6 * 4}, 1), b = testing::random_buffer<float>({4 * 5}, 2);
  Buffer c = testing::random_buffer<float>({6 * 5}, 3), c0(DType::f32, {30}), ab(DType::f32, {30});
  std::copy_n(c.as<float>(), 30, c0.as<float>());
  GemmShape s{false, false, 6, 5, 4};
  gemm(ctx, DType::f32, s, 1.0, a.as<float>(), b.as<float>(), 1.0, c.as<float>());
  gemm(ctx, DType::f32, s, 1.0, a.as<float>(), b.as<float>(), 0.0, ab.as<float>());
  for (int i = 0; i < 30; ++i) EXPECT_NEAR(c.as<float>()[i], c0.as<float>()[i] + ab.as<float>()[i], 1e-5);
}

}  // namespace
}  // namespace tfm
