// CUDA emulation (see kernels/core/cuda_emu/README.md): IEEE binary16 as CUDA's cuda_fp16.h
// presents it to device code — conversions rounding to nearest even with subnormals, infinities
// and NaN, and the two-element pack whose first element lies in the low half.
#pragma once
#include <cstdint>
#include <cstring>

namespace tfm_emu {
inline uint16_t float_to_half_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to or beyond infinity
  if (abs < 0x38800000u) {                                  // below the smallest normal 2^-14
    if (abs < 0x33000000u) return uint16_t(sign);           // below half the smallest subnormal
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(abs >> 23);  // 14 + (127 - e) - 1 ... value = mant · 2^(e-150)
    // subnormal half = value / 2^-24 = mant · 2^(e - 126) → shift right by (126 - e)
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    const uint32_t r = q + ((rem > halfway || (rem == halfway && (q & 1u))) ? 1u : 0u);
    return uint16_t(sign | r);
  }
  uint32_t h = ((abs >> 13) - (112u << 10));  // rebias 127 → 15
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    if (m == 0) {
      u = sign;
    } else {  // subnormal: m · 2^-24
      float f = float(m) * (1.0f / 16777216.0f);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace tfm_emu

struct alignas(2) __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(tfm_emu::float_to_half_bits(f)) {}
  operator float() const { return tfm_emu::half_bits_to_float(__x); }
};
struct alignas(4) __half2 {
  __half x, y;
};

inline float __half2float(__half v) { return float(v); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline __half2 __floats2half2_rn(float lo, float hi) { return {__half(lo), __half(hi)}; }
