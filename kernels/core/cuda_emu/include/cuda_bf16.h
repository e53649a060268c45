// CUDA emulation (see kernels/core/cuda_emu/README.md): bfloat16 as CUDA's cuda_bf16.h presents
// it to device code — a 16-bit storage type, conversions rounding to nearest even, and the
// two-element pack whose first element lies in the low half of the 32-bit word.
#pragma once
#include <cstdint>
#include <cstring>

namespace tfm_emu {
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                            // nearest even
  return uint16_t(u >> 16);
}
}  // namespace tfm_emu

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(tfm_emu::float_to_bf16_bits(f)) {}
  operator float() const { return tfm_emu::bits_float(uint32_t(__x) << 16); }
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 v) { return float(v); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__nv_bfloat16(lo), __nv_bfloat16(hi)};
}
