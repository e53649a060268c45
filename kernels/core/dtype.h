// Element types and devices. Precision is a run-time choice (a Tensor carries its dtype), so one
// binary runs fp32, bf16 and fp16, and the CPU twins also run in double for gradient checks.
#pragma once
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/core/check.h"

namespace tfm {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u16 };
enum class Device : uint8_t { cpu, cuda };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64:
    case DType::i64: return 8;
    case DType::f32:
    case DType::i32: return 4;
    case DType::bf16:
    case DType::f16:
    case DType::u16: return 2;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u16: return "u16";
  }
  return "?";
}

inline const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

// Storage types for 16-bit floats on the host; arithmetic happens after conversion to float.
struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16_t>() { return DType::bf16; }
template <> constexpr DType dtype_of<f16_t>() { return DType::f16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::u16; }

// Accumulation type of a floating type: statistics and reductions run in at least fp32
// (in double when the tensors are double, so gradient checks stay exact).
template <class T> struct acc { using type = float; };
template <> struct acc<double> { using type = double; };
template <class T> using acc_t = typename acc<T>::type;

// Calls f(T{}) with T the C++ type of a CPU floating dtype (f32 or f64); the CPU twins are
// templates instantiated for exactly these two.
template <class F>
void dispatch_cpu_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: fail(cat(op, ": the CPU twin runs f32 or f64, got ", dtype_name(t)));
  }
}

// Host conversions between float and the 16-bit storage types (the GPU tests use them to upload
// and read back bf16/f16 tensors). Both round to nearest, ties to even, as the device's
// __float2bfloat16_rn / __float2half_rn do; NaN stays NaN (quiet), overflow goes to ±inf.
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline bf16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return bf16_t{uint16_t((u >> 16) | 0x0040u)};  // NaN
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest even; a carry out of the mantissa
  // correctly bumps the exponent (and the largest finite values round up to inf).
  u += 0x7FFFu + ((u >> 16) & 1u);
  return bf16_t{uint16_t(u >> 16)};
}
inline float bf16_to_float(bf16_t h) { return bits_float(uint32_t(h.bits) << 16); }

inline f16_t float_to_f16(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return f16_t{uint16_t(sign | 0x7E00u)};  // NaN
  // 65520 = 0x477FF000 is halfway between 65504 (the largest half) and 2^16; ties go to the
  // even neighbour, which is inf.
  if (a >= 0x477FF000u) return f16_t{uint16_t(sign | 0x7C00u)};
  if (a < 0x38800000u) {
    // Below 2^-14: a subnormal half m · 2^-24 (or zero). Scaling by 2^24 is exact, and
    // nearbyint rounds to nearest even in the default rounding mode; m = 1024 is the smallest
    // normal, whose bit pattern is exactly 0x0400.
    float m = std::nearbyint(bits_float(a) * 16777216.0f);
    return f16_t{uint16_t(sign | uint16_t(m))};
  }
  uint32_t exponent = (a >> 23) - 127 + 15, mantissa = a & 0x7FFFFFu;
  uint32_t h = (exponent << 10) | (mantissa >> 13);
  uint32_t rest = mantissa & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry bumps the exponent
  return f16_t{uint16_t(sign | h)};
}
inline float f16_to_float(f16_t h) {
  uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  uint32_t exponent = (h.bits >> 10) & 0x1Fu, mantissa = h.bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24, exact in float
    float v = std::ldexp(float(mantissa), -24);
    return sign ? -v : v;
  }
  if (exponent == 31) return bits_float(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

}  // namespace tfm
