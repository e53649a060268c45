// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A random value is a pure
// function of (seed, counter), so the CPU twin and the CUDA twin of dropout draw the same mask,
// and backward regenerates the forward mask instead of storing it.
//
// Element convention shared by every op that draws randomness: element e (global index, i.e.
// DropoutSpec::offset + logical index) uses word (e % 4) of philox(seed, counter = e / 4). A
// thread that handles four consecutive elements therefore calls Philox once.
//
// The logical index is the element's index in the whole (unsharded) tensor. A call that holds
// only a column block of it (tensor parallelism: one rank's share of the FFN hidden columns or of
// the attention heads) describes the block in its DropoutSpec (dropout_column_block()), so the
// mask of every element is the one it has in the unsharded model whatever the TP degree.
#pragma once
#include <cstdint>

#include "kernels/core/check.h"

#if defined(__CUDACC__)
#define TFM_HD __host__ __device__ __forceinline__
#else
#define TFM_HD inline
#endif

namespace tfm {

struct Philox4 { uint32_t x[4]; };

TFM_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

TFM_HD Philox4 philox4x32_10(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The 32 random bits of global element e.
TFM_HD uint32_t philox_bits(uint64_t seed, uint64_t e) {
  return philox4x32_10(seed, e >> 2).x[e & 3];
}

// Dropout keeps an element when its bits are >= this threshold: P(keep) = 1 - p to within 2^-32.
TFM_HD uint32_t dropout_threshold(float p) {
  double t = double(p) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : uint32_t(t);
}

// What a dropout site needs: rate, seed and the global element offset of this call, so that
// every call site and step draws from a disjoint range of counters.
struct DropoutSpec {
  float p = 0.0f;
  uint64_t seed = 0;
  uint64_t offset = 0;
  // Column block of a larger logical tensor (tensor parallelism): when block > 0, local element i
  // is logical element (i / block)·block_stride + block_start + i % block; block == 0: i itself.
  uint64_t block = 0, block_stride = 0, block_start = 0;
  bool active() const { return p > 0.0f; }
};

// The global element (offset + logical index) that local element i of a call draws.
TFM_HD uint64_t dropout_element(const DropoutSpec& d, uint64_t i) {
  if (d.block == 0) return d.offset + i;
  return d.offset + (i / d.block) * d.block_stride + d.block_start + i % d.block;
}

TFM_HD bool dropout_keep(const DropoutSpec& d, uint64_t local_index) {
  return philox_bits(d.seed, dropout_element(d, local_index)) >= dropout_threshold(d.p);
}

// The spec for a call holding columns [first_col, first_col + local_cols) of every row of a
// logical tensor with total_cols columns, given the spec of the whole tensor. "Columns" are any
// trailing block: for attention probabilities [B, H, Tq, Tk] of heads [h0, h0 + Hl), pass
// local_cols = Hl·Tq·Tk, total_cols = H·Tq·Tk, first_col = h0·Tq·Tk. When the call holds every
// column the spec is returned unchanged (block == 0, the contiguous fast paths). Composing two
// blocks is not supported (d must not already describe one).
inline DropoutSpec dropout_column_block(DropoutSpec d, int64_t local_cols, int64_t total_cols,
                                        int64_t first_col) {
  TFM_CHECK(d.block == 0, "dropout_column_block: the spec already describes a column block");
  TFM_CHECK(local_cols >= 1 && first_col >= 0 && first_col + local_cols <= total_cols,
            "dropout_column_block: columns [", first_col, ", ", first_col + local_cols,
            ") do not fit in ", total_cols, " columns");
  if (local_cols == total_cols) return d;
  d.block = uint64_t(local_cols);
  d.block_stride = uint64_t(total_cols);
  d.block_start = uint64_t(first_col);
  return d;
}

}  // namespace tfm
