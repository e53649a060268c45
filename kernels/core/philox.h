// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A random value is a pure
// function of (seed, counter), so the CPU twin and the CUDA twin of dropout draw the same mask,
// and backward regenerates the forward mask instead of storing it.
//
// Element convention shared by every op that draws randomness: element e (global index, i.e.
// DropoutSpec::offset + local index) uses word (e % 4) of philox(seed, counter = e / 4). A thread
// that handles four consecutive elements therefore calls Philox once.
#pragma once
#include <cstdint>

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
  bool active() const { return p > 0.0f; }
};

TFM_HD bool dropout_keep(const DropoutSpec& d, uint64_t local_index) {
  return philox_bits(d.seed, d.offset + local_index) >= dropout_threshold(d.p);
}

}  // namespace tfm
