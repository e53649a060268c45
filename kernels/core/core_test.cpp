#include <gtest/gtest.h>

#include <set>

#include "kernels/core/arena.h"
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

}  // namespace
}  // namespace tfm
