// Element types and devices. Precision is a run-time choice (a Tensor carries its dtype), so one
// binary runs fp32, bf16 and fp16, and the CPU twins also run in double for gradient checks.
#pragma once
#include <cstddef>
#include <cstdint>
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

}  // namespace tfm
