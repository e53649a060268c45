#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

#include "kernels/core/arena.h"
#include "kernels/core/dtype.h"
#include "kernels/core/philox.h"

namespace tfm {
namespace {

// Philox4x32-10 known-answer vector from Random123's kat_vectors (counter 0, key 0); our
// counters use only the low two words, so that is the vector that applies.
TEST(Philox, MatchesRandom123KnownAnswers) {
  Philox4 zero = philox4x32_10(0, 0);
  EXPECT_EQ(zero.x[0], 0x6627e8d5u);
  EXPECT_EQ(zero.x[1], 0xe169c58du);
  EXPECT_EQ(zero.x[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.x[3], 0x9b00dbd8u);
}

TEST(Philox, DropoutKeepRateIsOneMinusP) {
  DropoutSpec d{0.1f, 1234, 0};
  int64_t kept = 0, n = 1 << 20;
  for (int64_t i = 0; i < n; ++i) kept += dropout_keep(d, uint64_t(i));
  EXPECT_NEAR(double(kept) / n, 0.9, 0.002);
}

TEST(Arena, GrowsToHighWaterThenStopsAllocating) {
  Arena arena;
  for (int step = 0; step < 3; ++step) {
    arena.reset();
    void* a = arena.alloc_bytes(1000);
    void* b = arena.alloc_bytes(5000);
    EXPECT_NE(a, b);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 256, 0u);
  }
  // Only the first step overflowed (twice); later steps fit in the grown block.
  EXPECT_EQ(arena.overflow_allocations(), 2u);
  EXPECT_GE(arena.capacity(), 6000u);
}

// Host bf16 / f16 conversions (kernels/core/dtype.h): round to nearest even, NaN stays NaN,
// overflow goes to inf, f16 subnormals are exact.
TEST(DTypeConversion, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f).bits, 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f).bits, 0xC000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0); just above rounds up.
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f).bits, 0x3F80);
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f).bits, 0x3F81);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f).bits, 0x3F82);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()).bits, 0x7F80);  // to inf
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()).bits, 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_EQ(bf16_to_float(bf16_t{0x3F81}), 1.0f + 0x1p-7f);
  for (float v : {0.0f, -0.0f, 0.15625f, -3.5f, 1e30f, 1e-30f})
    EXPECT_EQ(bf16_to_float(float_to_bf16(bf16_to_float(float_to_bf16(v)))),
              bf16_to_float(float_to_bf16(v)));
}

TEST(DTypeConversion, F16RoundsToNearestEvenWithSubnormalsAndOverflow) {
  EXPECT_EQ(float_to_f16(1.0f).bits, 0x3C00);
  EXPECT_EQ(float_to_f16(-2.0f).bits, 0xC000);
  EXPECT_EQ(float_to_f16(65504.0f).bits, 0x7BFF);
  EXPECT_EQ(float_to_f16(65519.0f).bits, 0x7BFF);  // below the halfway point to 2^16
  EXPECT_EQ(float_to_f16(65520.0f).bits, 0x7C00);  // the tie goes to the even neighbour, inf
  EXPECT_EQ(float_to_f16(-1e10f).bits, 0xFC00);
  EXPECT_EQ(float_to_f16(0x1p-24f).bits, 0x0001);      // smallest subnormal
  EXPECT_EQ(float_to_f16(0x1p-25f).bits, 0x0000);      // tie between 0 and 2^-24: even is 0
  EXPECT_EQ(float_to_f16(0x1.8p-24f).bits, 0x0002);    // 1.5 · 2^-24: tie, rounds to even 2
  EXPECT_EQ(float_to_f16(0x1p-14f).bits, 0x0400);      // smallest normal
  EXPECT_EQ(float_to_f16(0x1.ffcp-15f).bits, 0x0400);  // rounds up out of the subnormals
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even.
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f).bits, 0x3C00);
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f).bits, 0x3C02);
  EXPECT_EQ(float_to_f16(-0.0f).bits, 0x8000);
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
  EXPECT_EQ(f16_to_float(f16_t{0x7C00}), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_float(f16_t{0x0001}), 0x1p-24f);
  EXPECT_EQ(f16_to_float(f16_t{0x83FF}), -1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_float(f16_t{0x3555}), 0x1.554p-2f);
  // Every finite half survives float and back.
  for (uint32_t b = 0; b < 0x10000; ++b) {
    f16_t h{uint16_t(b)};
    if ((b & 0x7C00) == 0x7C00) continue;
    ASSERT_EQ(float_to_f16(f16_to_float(h)).bits, h.bits) << std::hex << b;
  }
}

}  // namespace
}  // namespace tfm
